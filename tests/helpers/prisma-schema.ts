/**
 * A small reader for the parts of a Prisma schema that become tables (scalar fields, their types, `?`, @id,
 * @default, @updatedAt, @unique, @relation, @@index, @@unique, @@id), shared by the schema tests of both
 * databases. It refuses what it does not understand (@map, @db.*, @@map, ...) rather than misread it: a schema
 * that starts using those needs this reader taught first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './server';

export interface Field {
  name: string;
  /** Prisma's scalar type: String, Int, DateTime, ... */
  type: string;
  optional: boolean;
  /** The @default(...) argument as written (`now()`, `"complete"`, `0`, `autoincrement()`), or null. */
  default: string | null;
  id: boolean;
  unique: boolean;
  updatedAt: boolean;
}

export interface Index {
  /** The name Prisma gives it: <Model>_<columns>_idx, or _key for a unique one. */
  name: string;
  columns: string[];
  unique: boolean;
}

export type ReferentialAction = 'CASCADE' | 'RESTRICT' | 'NO ACTION' | 'SET NULL' | 'SET DEFAULT';

export interface ForeignKey {
  /** <Model>_<fields>_fkey */
  name: string;
  columns: string[];
  references: string;
  referencedColumns: string[];
  onDelete: ReferentialAction;
  onUpdate: ReferentialAction;
}

export interface Model {
  name: string;
  /** Scalar fields, in declaration order: the table's columns. */
  fields: Field[];
  primaryKey: string[];
  /** @unique, @@unique and @@index, in declaration order. */
  indexes: Index[];
  foreignKeys: ForeignKey[];
}

const FIELD_ATTRIBUTES = /^@(id|unique|updatedAt|default\(.*\)|relation\(.*\))$/;
const ACTIONS: Record<string, ReferentialAction> = { Cascade: 'CASCADE', Restrict: 'RESTRICT', NoAction: 'NO ACTION', SetNull: 'SET NULL', SetDefault: 'SET DEFAULT' };

const listOf = (s: string) => s.split(',').map((c) => c.trim()).filter(Boolean);
const argOf = (attrs: string, key: string) => new RegExp(`${key}:\\s*(\\[[^\\]]*\\]|\\w+)`).exec(attrs)?.[1];

/** A field's attributes, split at the top level (a default or relation may hold spaces and brackets). */
function splitAttributes(rest: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of rest.trim()) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === '@' && depth === 0 && current.trim()) {
      out.push(current.trim());
      current = '';
    }
    current += ch;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

export function readSchema(text: string): Model[] {
  const modelNames = [...text.matchAll(/^model (\w+) \{/gm)].map((m) => m[1]);
  const models: Model[] = [];
  for (const block of text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const name = block[1];
    const model: Model = { name, fields: [], primaryKey: [], indexes: [], foreignKeys: [] };
    const relations: { attrs: string; optional: boolean; target: string }[] = [];
    for (const raw of block[2].split('\n')) {
      const line = raw.replace(/\/\/.*$/, '').trim();
      if (!line) continue;
      if (line.startsWith('@@')) {
        const attr = /^@@(index|unique|id)\(\[([^\]]+)\]\)$/.exec(line);
        if (!attr) throw new Error(`${name}: the schema reader does not understand ${line}`);
        const columns = listOf(attr[2]);
        if (attr[1] === 'id') model.primaryKey = columns;
        else model.indexes.push({ name: `${name}_${columns.join('_')}_${attr[1] === 'unique' ? 'key' : 'idx'}`, columns, unique: attr[1] === 'unique' });
        continue;
      }
      const field = /^(\w+)\s+(\w+)(\[\])?(\?)?(.*)$/.exec(line);
      if (!field) throw new Error(`${name}: the schema reader does not understand ${line}`);
      const [, fieldName, type, list, optional, rest] = field;
      if (modelNames.includes(type)) {
        // A relation field: the side holding `fields:` becomes a foreign key; the other side is no column.
        if (!list && /@relation\(.*fields:/.test(rest)) relations.push({ attrs: rest, optional: Boolean(optional), target: type });
        continue;
      }
      if (list) throw new Error(`${name}.${fieldName}: scalar lists are not portable and not read here`);
      const attrs = splitAttributes(rest);
      const unknown = attrs.find((a) => !FIELD_ATTRIBUTES.test(a));
      if (unknown) throw new Error(`${name}.${fieldName}: the schema reader does not understand ${unknown}`);
      const f: Field = {
        name: fieldName,
        type,
        optional: Boolean(optional),
        default: attrs.map((a) => /^@default\((.*)\)$/.exec(a)?.[1]).find((d) => d !== undefined) ?? null,
        id: attrs.includes('@id'),
        unique: attrs.includes('@unique'),
        updatedAt: attrs.includes('@updatedAt'),
      };
      model.fields.push(f);
      if (f.id) model.primaryKey = [f.name];
      if (f.unique) model.indexes.push({ name: `${name}_${f.name}_key`, columns: [f.name], unique: true });
    }
    for (const r of relations) {
      const columns = listOf(argOf(r.attrs, 'fields')!.slice(1, -1));
      const onDelete = argOf(r.attrs, 'onDelete');
      const onUpdate = argOf(r.attrs, 'onUpdate');
      model.foreignKeys.push({
        name: `${name}_${columns.join('_')}_fkey`,
        columns,
        references: r.target,
        referencedColumns: listOf(argOf(r.attrs, 'references')!.slice(1, -1)),
        // Prisma's defaults: a required relation restricts deletes, an optional one sets null; updates cascade.
        onDelete: onDelete ? ACTIONS[onDelete] : r.optional ? 'SET NULL' : 'RESTRICT',
        onUpdate: onUpdate ? ACTIONS[onUpdate] : 'CASCADE',
      });
    }
    models.push(model);
  }
  return models;
}

/** A database's Prisma schema as Prisma reads it: every .prisma file of its folder (the models arrive through a link). */
export function schemaText(kind: 'sqlite' | 'postgresql'): string {
  const dir = path.join(ROOT, 'prisma', kind);
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.prisma'))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
    .join('\n');
}
