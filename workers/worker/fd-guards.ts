/**
 * The file descriptor wall: agent code may use a descriptor number only if this thread opened it itself.
 *
 * Every descriptor of the cell is the whole process's, whatever thread opened it: fd 3 is the cell's channel to
 * the front (other users' run inputs and query answers come in on it, and whatever is written to it the front takes
 * as the cell's word: events, results, statements for any run of the cell), fds 1 and 2 are the front's log, and the
 * cell's model broker holds sockets carrying other users' model calls. Node's permission model checks paths, never
 * descriptors, so `fs.writeSync(3, …)`, `fs.readSync(3, …)`, `new net.Socket({ fd: 3 })` or
 * `http.request({ fd: 3 })` reached all of that from any worker. Refused here, before any agent module loads:
 * - `fs`'s descriptor functions (and the path-or-descriptor ones given a number, and streams given `fd`) accept
 *   only descriptors this thread's `fs.open`/`fs.openSync` returned and it has not closed since;
 * - wrapping a raw descriptor in a socket, server, UDP socket or terminal stream is refused outright (the handles'
 *   own `open`, which `net`, `http`, `dgram` and servers' `listen({ fd })` all end in, and `tty`'s streams);
 * - a FileHandle (`fs.promises.open`) acts only on the descriptor it opened: its `fd` must be its native handle's
 *   (a FileHandle pointed at fd 3 through its `kFd` symbol, or an object made from its prototype, is refused), and
 *   native handles cannot be made for a number;
 * - `process.report.writeReport('stdout' | 'stderr')` writes fds 1 and 2 from C++: refused.
 * Attacks that found these: an attacker's-eye review, each shown with a throwaway harness (README, threat model).
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import tty from 'node:tty';
import { markAsUntransferable } from 'node:worker_threads';
import { pin, refusal } from './host-guards.js';
import { countResolverSockets } from './resolver-sockets.js';
import { socketHandles, type SocketHandles } from './socket-handles.js';

/** Built-ins the wall replaces members of (parameters so a test can hand its own). */
export interface DescriptorModules {
  fs: typeof fs;
  net: typeof net;
  dgram: typeof dgram;
  tty: typeof tty;
  process: NodeJS.Process;
}

/** fs functions whose first argument is a descriptor; each has a `…Sync` twin. */
const DESCRIPTOR_FIRST = ['close', 'fchmod', 'fchown', 'fdatasync', 'fstat', 'fsync', 'ftruncate', 'futimes', 'read', 'readv', 'write', 'writev'] as const;
/** fs functions that take a path or, given a number, a descriptor; each has a `…Sync` twin. */
const PATH_OR_DESCRIPTOR = ['readFile', 'writeFile', 'appendFile', 'truncate'] as const;
/** fs stream makers and classes that take `{ fd }` in their options (second argument). */
const STREAM_MAKERS = ['createReadStream', 'createWriteStream', 'ReadStream', 'WriteStream', 'FileReadStream', 'FileWriteStream'] as const;

type AnyFunction = (...args: unknown[]) => unknown;

// Taken at load, before any agent module: with THREAD_LOCKDOWN=0 agent code could replace `Reflect.apply` or
// WeakSet's methods, and the socket wrappers below sit inside the egress wall's, so a replaced `apply` handed them
// the native `connect` (helper-72). Called only in these forms.
const apply = Reflect.apply;
const uncurry = <A extends unknown[], R>(f: (...args: A) => R) => Function.prototype.call.bind(f) as unknown as (self: object, ...args: A) => R;
const weakHas = uncurry(WeakSet.prototype.has);
const weakAdd = uncurry(WeakSet.prototype.add);
const weakDelete = uncurry(WeakSet.prototype.delete);
const then = Promise.prototype.then;
const untransferable = markAsUntransferable;
const timeout = setTimeout;
const define = Reflect.defineProperty;
const unref = (timer: NodeJS.Timeout) => timer.unref();
const noop = () => undefined;

/** How often reads and writes by path waiting for room look again while something other than them fills the budget. */
const WAIT_POLL_MS = 10;

/** Every fs member the wall guards, by name (a test checks no descriptor-taking function of fs is left out). */
export const GUARDED_FS_MEMBERS: readonly string[] = [
  ...[...DESCRIPTOR_FIRST, ...PATH_OR_DESCRIPTOR].flatMap((name) => [name, `${name}Sync`]),
  ...STREAM_MAKERS,
  'open',
  'openSync',
];

/**
 * For `fs`'s members: ordinary properties, not `pin`ned like the other guards. graceful-fs (under fs-extra and
 * many tools) copies every member of `fs` with its descriptor and then reassigns and redefines them on the copy,
 * which fails on pinned ones. The wall does not need them pinned: the originals are held only here, so whatever
 * code puts in their place can only call the guarded ones.
 */
function replace(obj: object, key: string | symbol, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, configurable: true, enumerable: true });
}

/** The guard keeps what else the original carries (util.promisify's custom forms of `fs.read` and `fs.write`). */
function sameExtras(guarded: AnyFunction, original: AnyFunction): AnyFunction {
  for (const key of Reflect.ownKeys(original)) {
    if (typeof key === 'symbol') Object.defineProperty(guarded, key, Reflect.getOwnPropertyDescriptor(original, key)!);
  }
  return guarded;
}

/**
 * How many files the thread may hold open at once (RUN_OPEN_FILES; 0: unbounded): descriptors from `fs.open` and
 * `fs.openSync`, FileHandles from `fs.promises.open`, Dirs from `fs.opendir`, reads and writes by path in flight,
 * and sockets (TCP, Unix, UDP), counted from the call that gives their handle a descriptor until their handle's
 * `close`, and the DNS resolver's (resolver-sockets.ts). Descriptors are the whole cell's: one run that held
 * 20,000 files made every other run of its cell fail with EMFILE, and kept them past its end (helper-69); sockets
 * did the same (helper-70). An open past the budget fails with EMFILE, as the system's own limit would, and counts
 * `onLimit`.
 */
export interface OpenFilesBudget {
  max: number;
  onLimit: () => void;
}

/** What the wall gives the worker's own code. */
export interface DescriptorWall {
  /** A synchronous writer to this thread's standard output for the worker's own log (taken before the wall). */
  writeLog: (text: string) => void;
  /** Descriptors from `fs.open`/`fs.openSync`, FileHandles and Dirs the thread holds now: a run that ends with some left them open. */
  openDescriptors(): number;
  /** Sockets the thread holds now, its DNS resolvers' included (their leaks are counted as handles: handle-tracker.ts). */
  openSockets(): number;
}

/** libuv's error for too many open files: what a socket's call returns when the system's own limit is reached. */
const UV_EMFILE = -os.constants.errno.EMFILE;

/**
 * The native members that give a socket's handle its descriptor (libuv makes it at the first of them; `open(fd)` is
 * refused outright, `listen` and a Unix `bind` by the listening wall), by handle: each counts the handle once.
 */
const SOCKET_OPENERS = { tcp: ['connect', 'connect6', 'bind', 'bind6'], pipe: ['connect'], udp: ['bind', 'bind6', 'connect', 'connect6', 'send', 'send6'] } as const;

/**
 * Objects that hold a descriptor until closed (FileHandles, Dirs), counted: each stops counting once closed, or once
 * collected (Node closes a dropped one then).
 */
function heldUntilClosed() {
  const tokens = new WeakMap<object, object>();
  const live = new Set<object>();
  const collected = new FinalizationRegistry<object>((token) => live.delete(token));
  return {
    add(held: object): void {
      const token = {};
      tokens.set(held, token);
      live.add(token);
      collected.register(held, token, token);
    },
    closed(held: object): void {
      const token = tokens.get(held);
      if (!token) return;
      tokens.delete(held);
      live.delete(token);
      collected.unregister(token);
    },
    has: (held: object): boolean => tokens.has(held),
    get size(): number {
      return live.size;
    },
  };
}

/** Installs the wall. */
export function guardDescriptors(
  onRefused: () => void,
  modules: DescriptorModules = { fs, net, dgram, tty, process },
  // The worker finds these once for this wall and the egress wall (run-entry.ts).
  handles: SocketHandles = socketHandles({ net: modules.net, dgram: modules.dgram, dns }),
  budget: OpenFilesBudget = { max: 0, onLimit: () => undefined },
  // A FileHandle opened before the wall: FileHandles are guarded at once, not at the first `fs.promises.open` (Node's
  // own helpers, fs.promises.readFile and the like, make theirs without it). Closed here.
  sample: object | null = null,
): DescriptorWall {
  const m = modules.fs as unknown as Record<string, AnyFunction>;
  const writeSync = m.writeSync.bind(modules.fs) as typeof fs.writeSync;
  /** Descriptors this thread opened through fs and has not closed. */
  const own = new Set<number>();
  /**
   * FileHandles opened and not closed (nor collected), by their native handle: that holds the descriptor. Counted by
   * the JavaScript FileHandle, a handle whose `kFd` was set to -1 closed without closing (its close returns at once),
   * and one dropped while its native handle was kept was collected: either way 100 of 100 held descriptors counted none.
   */
  const fileHandles = heldUntilClosed();
  let opening = 0;
  /** Reads and writes by path in flight (each holds a descriptor meanwhile). */
  let inFlight = 0;
  /** Dirs (fs.opendir) open: each holds its descriptor until its close, or the end of its iteration. */
  const dirs = heldUntilClosed();
  /** Socket handles with a descriptor, not closed through their `close` (another way to close keeps one counted). */
  const sockets = new WeakSet<object>();
  let socketCount = 0;
  const refuse = (what: string): never => {
    onRefused();
    throw refusal(what);
  };
  // The DNS resolver's own sockets, to its servers while queries are pending.
  const resolvers = countResolverSockets(handles.resolver, handles.getAsyncId, { full: () => full(), onLimit: budget.onLimit, refused: UV_EMFILE }, refuse);
  const full = () => budget.max > 0 && own.size + closeWhenIdle.size + fileHandles.size + dirs.size + opening + inFlight + socketCount + resolvers.held() >= budget.max;
  const overBudget = (): Error | null => {
    if (!full()) return null;
    budget.onLimit();
    return Object.assign(new Error(`EMFILE: too many open files: a worker's runs may hold ${budget.max} at once (RUN_OPEN_FILES)`), { code: 'EMFILE', errno: -24, syscall: 'open' });
  };
  const check = (name: string, fd: unknown) => {
    if (!own.has(fd as number)) refuse(`fs.${name}(${String(fd)})`);
  };

  const closeNow = m.closeSync;
  /**
   * Asynchronous operations this thread has in flight on each of its descriptors. A descriptor's number is free for
   * the whole cell once it is closed, so a close while some wait in the thread pool (a run can keep it busy) would
   * send them to whatever the cell opens next under that number, another user's file (helper-72). Such a close
   * takes the number from agent code at once, and closes it once the last of them has answered.
   */
  const pending = new Map<number, number>();
  /** Descriptors closed by agent code while operations were in flight on them: still open, still counted. */
  const closeWhenIdle = new Set<number>();
  const settle = (fd: number) => {
    const left = (pending.get(fd) ?? 1) - 1;
    if (left > 0) return void pending.set(fd, left);
    pending.delete(fd);
    if (!closeWhenIdle.delete(fd)) return;
    try {
      closeNow(fd);
    } catch {
      // closed already: nothing to give back
    }
  };
  /**
   * Calls an asynchronous fs function on `fd`, counted in flight until Node answers. Every function argument is
   * wrapped, so whichever one Node takes for the callback (its reading of the arguments varies by function and
   * form) counts the answer, once.
   */
  const inFlightOn = (fd: number, original: AnyFunction, args: unknown[]): unknown => {
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      settle(fd);
    };
    for (let i = 1; i < args.length; i++) {
      const fn = args[i];
      if (typeof fn !== 'function') continue;
      args[i] = function answered(this: unknown, ...answerArgs: unknown[]) {
        answer();
        return apply(fn as AnyFunction, this, answerArgs);
      };
    }
    pending.set(fd, (pending.get(fd) ?? 0) + 1);
    try {
      return apply(original, undefined, args);
    } catch (err) {
      answer();
      throw err;
    }
  };
  /** Takes `fd` from agent code; closes it now, or once its operations in flight have answered. */
  const closeOwn = (fd: number): void => {
    own.delete(fd);
    if (pending.has(fd)) closeWhenIdle.add(fd);
    else closeNow(fd);
  };
  for (const base of DESCRIPTOR_FIRST) {
    for (const name of [base, `${base}Sync`]) {
      const original = m[name];
      if (name === 'closeSync') {
        replace(m, name, sameExtras((...args: unknown[]) => {
          check(name, args[0]);
          closeOwn(args[0] as number);
        }, original));
        continue;
      }
      if (name === 'close') {
        // Closed at once (or once idle), the callback called later as Node would: an asynchronous close waits in
        // libuv's thread pool, which agent code can keep busy, and a worker retired meanwhile never closes it (its
        // descriptors then stay the cell's for good: 20,000 left by four runs that completed, helper-71). A callback
        // Node refuses (`fs.close(fd, notAFunction)`) goes to Node, which throws before closing anything: the
        // descriptor stays counted (forgotten, it was held uncounted: helper-70).
        replace(m, name, sameExtras((...args: unknown[]) => {
          const [fd, callback] = args;
          if (callback !== undefined && typeof callback !== 'function') return original(...args);
          check(name, fd);
          let error: unknown = null;
          try {
            closeOwn(fd as number);
          } catch (err) {
            error = err;
          }
          if (typeof callback === 'function') modules.process.nextTick(callback as AnyFunction, error);
          else if (error) modules.process.nextTick(() => { throw error; });
          return undefined;
        }, original));
        continue;
      }
      const asynchronous = !name.endsWith('Sync');
      replace(m, name, sameExtras((...args: unknown[]) => {
        check(name, args[0]);
        return asynchronous ? inFlightOn(args[0] as number, original, args) : original(...args);
      }, original));
    }
  }
  for (const base of PATH_OR_DESCRIPTOR) {
    for (const name of [base, `${base}Sync`]) {
      const original = m[name];
      const asynchronous = !name.endsWith('Sync');
      replace(m, name, sameExtras((...args: unknown[]) => {
        if (typeof args[0] !== 'number') return original(...args);
        check(name, args[0]);
        return asynchronous ? inFlightOn(args[0], original, args) : original(...args);
      }, original));
    }
  }
  const streamDescriptor = (name: string, options: unknown) => {
    const fd = options !== null && typeof options === 'object' ? (options as { fd?: unknown }).fd : undefined;
    // A FileHandle (from fs.promises.open) is its own; numbers must be this thread's.
    if (typeof fd === 'number') check(name, fd);
  };
  for (const name of STREAM_MAKERS) {
    const original = m[name];
    if (typeof original !== 'function') continue;
    // A proxy, not a wrapper: `stream instanceof fs.ReadStream` stays true for the streams fs makes.
    replace(m, name, new Proxy(original, {
      apply: (target, self, args: unknown[]) => (streamDescriptor(name, args[1]), apply(target, self, args)),
      construct: (target, args: unknown[], newTarget) => (streamDescriptor(name, args[1]), Reflect.construct(target, args, newTarget)),
    }));
  }

  const openSync = m.openSync;
  replace(m, 'openSync', (...args: unknown[]) => {
    const over = overBudget();
    if (over) throw over;
    const fd = openSync(...args) as number;
    own.add(fd);
    return fd;
  });
  /**
   * An open with a callback at `args[at]`: refused past the budget (the callback gets EMFILE), counted while it is
   * answered, `opened` given what it opened.
   */
  const openingWithCallback = (open: AnyFunction, args: unknown[], at: number, opened: (what: never) => void): unknown => {
    const callback = args[at];
    if (typeof callback !== 'function') return open(...args);
    const over = overBudget();
    if (over) return void modules.process.nextTick(callback as AnyFunction, over);
    opening++;
    args[at] = (err: unknown, what: never) => {
      opening--;
      if (!err && what !== undefined) opened(what);
      (callback as AnyFunction)(err, what);
    };
    try {
      return open(...args);
    } catch (err) {
      opening--;
      throw err;
    }
  };
  const open = m.open;
  // The callback where Node takes it (open(path, cb), open(path, flags, cb), open(path, flags, mode, cb); later
  // arguments are ignored): the last argument is not always it (helper-70).
  replace(m, 'open', (...args: unknown[]) => openingWithCallback(open, args, args.length < 3 ? 1 : typeof args[2] === 'function' ? 2 : 3, (fd: number) => own.add(fd)));

  // Sockets, servers and UDP sockets made from a raw descriptor all go through their handle's `open(fd)`.
  for (const proto of [handles.tcp, handles.pipe, handles.udp]) {
    const name = (proto as { constructor?: { name?: string } }).constructor?.name ?? 'handle';
    pin(proto, 'open', (fd: unknown) => refuse(`${name}.open(${String(fd)})`));
  }
  // Sockets count from the call that makes their descriptor (when it succeeds) to their handle's close. Installed
  // before the egress wall, which wraps the same members: a connection it refuses never reaches the count.
  for (const [kind, names] of Object.entries(SOCKET_OPENERS) as [keyof typeof SOCKET_OPENERS, readonly string[]][]) {
    const proto = handles[kind] as Record<string, AnyFunction>;
    for (const name of names) {
      const original = proto[name]!;
      replace(proto, name, function counted(this: object, ...args: unknown[]) {
        if (weakHas(sockets, this)) return apply(original, this, args);
        if (full()) {
          budget.onLimit();
          return UV_EMFILE;
        }
        const result = apply(original, this, args);
        // Not negative: the handle has its descriptor (a failure returns a negative libuv error, and made none to
        // keep; a UDP send done at once returns its size plus one).
        if (typeof result === 'number' && result >= 0 && !weakHas(sockets, this)) {
          weakAdd(sockets, this);
          socketCount++;
        }
        return result;
      });
    }
    // HandleWrap's close, inherited: an own member of each socket class, so it sees only their handles.
    const close = proto.close!;
    replace(proto, 'close', function closeCounted(this: object, ...args: unknown[]) {
      if (weakDelete(sockets, this)) socketCount--;
      return apply(close, this, args);
    });
  }
  // Not proxies: a proxy hands out the original class as `prototype.constructor`. A worker's own stdout is no
  // terminal, so nothing in it is an instance of these.
  for (const name of ['ReadStream', 'WriteStream'] as const) {
    pin(modules.tty, name, function refusedTerminal() {
      return refuse(`tty.${name}`);
    });
  }

  const promises = modules.fs.promises as unknown as Record<string, AnyFunction>;
  const openHandle = promises.open;
  // A FileHandle's descriptor is closed here once its native handle gave it up (guardFileHandles). Node warns of a
  // descriptor closed that fs.open did not open in this thread ("closed but not opened in unmanaged mode"): once per
  // close, for the wall's own doing, so that warning is kept quiet for these closes only.
  let quietWarnings = 0;
  const emitWarning = modules.process.emitWarning;
  replace(modules.process, 'emitWarning', function emitWarningUnlessOurs(this: unknown, ...args: unknown[]) {
    if (quietWarnings > 0 && typeof args[0] === 'string' && args[0].includes('closed but not opened in unmanaged mode')) return;
    return apply(emitWarning, this, args);
  });
  const closeHandleFd = (fd: unknown) => {
    quietWarnings++;
    try {
      closeNow(fd);
    } finally {
      quietWarnings--;
    }
  };
  let handleWall: FileHandleWall | null = null;
  if (sample) {
    handleWall = guardFileHandles(sample, refuse, closeHandleFd);
    void (sample as { close: () => Promise<void> }).close().catch(() => undefined);
  }
  /** An asynchronous open through fs.promises: refused past the budget, counted while it is answered. */
  const openingNow = async (open: AnyFunction, args: unknown[]): Promise<object> => {
    const over = overBudget();
    if (over) throw over;
    opening++;
    try {
      return (await open(...args)) as object;
    } finally {
      opening--;
    }
  };
  replace(promises, 'open', async (...args: unknown[]) => {
    const handle = await openingNow(openHandle, args);
    // The FileHandle classes exist only once one is made: guarded at the first, before agent code holds it.
    handleWall ??= guardFileHandles(handle, refuse, closeHandleFd);
    const nativeHandle = handleWall.adopt(handle);
    fileHandles.add(nativeHandle);
    // Never sent through a MessagePort (or structuredClone): the receiving FileHandle, this thread's or another's,
    // holds the descriptor uncounted while this one counts as closed (helper-74 hoarded 2,300 so, and got another
    // user's run killed by the cell's descriptor ceiling). Marked with a private symbol agent code cannot remove.
    untransferable(handle);
    untransferable(nativeHandle);
    // A FileHandle's `close` is an own property of each (Node 20 to 24), not its class's, and Node's own helpers
    // (streams, readFile on a handle) call it: wrapped here, on the handle. Not its 'close' event: agent code can
    // emit that on a handle it keeps open. Code that closes the handle some other way only keeps it counted.
    const close = (handle as { close: AnyFunction }).close;
    (handle as { close: AnyFunction }).close = function closeCounted(...closeArgs: unknown[]) {
      // This handle's, whatever `this` a caller gives: it is the handle the count is for.
      const closing = apply(close, handle, closeArgs) as Promise<void>;
      // Closed once its native handle has given its descriptor up, whatever the JavaScript close did.
      const closed = () => {
        if (!handleWall!.holdsDescriptor(nativeHandle)) fileHandles.closed(nativeHandle);
      };
      void closing.then(closed, closed);
      return closing;
    };
    return handle;
  });

  // Reads and writes by path that hold a descriptor while in flight without a counted open: fs.readFile opens
  // through Node's binding, and fs.promises' path functions through an internal FileHandle (fs.writeFile,
  // fs.appendFile and fs.truncate call fs.open, counted already). 3,000 reads at once held 3,000 descriptors while
  // they waited for the thread pool (helper-70).
  //
  // Past the budget they wait for room rather than fail: each holds its descriptor only while it runs, and Node 20's
  // ESM loader reads every static import of a module graph at once through fs.promises.readFile, so a package of
  // more than RUN_OPEN_FILES modules (lodash-es: ~640) failed to load (helper-76). They go RUN_OPEN_FILES at a time,
  // woken as one ends, or every WAIT_POLL_MS while something else fills the budget.
  const waiting: (() => void)[] = [];
  let next = 0;
  let poll = false;
  const wake = (): void => {
    while (next < waiting.length && !full()) {
      const start = waiting[next]!;
      waiting[next++] = noop;
      start();
    }
    if (next === waiting.length) {
      waiting.length = 0;
      next = 0;
    } else if (!poll) {
      poll = true;
      unref(timeout(() => ((poll = false), wake()), WAIT_POLL_MS));
    }
  };
  /** Whether a read or write by path may start now: there is room, and nobody waits. */
  const room = (): boolean => next === waiting.length && !full();
  /** Runs `start` once there is room (it must count itself in flight at once: the next one let through sees it). */
  const whenRoom = (start: () => void): void => {
    // Defined, not assigned: an assignment past the end would call a setter agent code put on Array.prototype.
    define(waiting, waiting.length, { value: start, writable: true, enumerable: true, configurable: true });
    wake();
  };
  const ended = (): void => {
    inFlight--;
    if (next < waiting.length) wake();
  };
  const readFile = m.readFile;
  replace(m, 'readFile', sameExtras((...args: unknown[]) => {
    // Node's own reading: the callback is the third argument, or the second.
    const at = args[2] ? 2 : 1;
    const callback = args[at];
    if (typeof args[0] === 'number' || typeof callback !== 'function') return readFile(...args);
    let answered = false;
    args[at] = (...answer: unknown[]) => {
      if (!answered) ended();
      answered = true;
      (callback as AnyFunction)(...answer);
    };
    // Arguments Node refuses throw to the caller when the read starts at once, and reach the callback when it waited.
    const start = (waited: boolean) => {
      inFlight++;
      try {
        readFile(...args);
      } catch (err) {
        if (!answered) ended();
        answered = true;
        if (!waited) throw err;
        (callback as AnyFunction)(err);
      }
    };
    if (room()) return start(false);
    whenRoom(() => start(true));
  }, readFile));
  for (const name of ['readFile', 'writeFile', 'appendFile', 'truncate']) {
    const original = promises[name];
    if (typeof original !== 'function') continue;
    replace(promises, name, async (...args: unknown[]) => {
      // A FileHandle of this thread's opens nothing more; what it does on the handle is an operation in flight on it.
      if (typeof args[0] === 'object' && args[0] !== null && handleWall?.adopted(args[0])) return handleWall.operation(args[0], () => original(...args) as Promise<unknown>);
      // Counted as it is let through: whatever is let through next sees it.
      if (room()) inFlight++;
      else await new Promise<void>((resolve) => whenRoom(() => ((inFlight += 1), resolve())));
      try {
        return await original(...args);
      } finally {
        ended();
      }
    });
  }

  const countDir = (dir: object) => dirs.add(dir);
  const opendirSync = m.opendirSync;
  replace(m, 'opendirSync', (...args: unknown[]) => {
    const over = overBudget();
    if (over) throw over;
    const dir = opendirSync(...args) as object;
    countDir(dir);
    return dir;
  });
  const opendir = m.opendir;
  // Node's own reading: opendir(path, cb) or opendir(path, options, cb).
  replace(m, 'opendir', (...args: unknown[]) => openingWithCallback(opendir, args, typeof args[1] === 'function' ? 1 : 2, countDir));
  const opendirPromise = promises.opendir;
  replace(promises, 'opendir', async (...args: unknown[]) => {
    const dir = await openingNow(opendirPromise, args);
    countDir(dir);
    return dir;
  });
  const dirProto = modules.fs.Dir.prototype as unknown as Record<string | symbol, AnyFunction>;
  const dirClose = dirProto.close!;
  const dirCloseSync = dirProto.closeSync!;
  // Closed at once when nothing else is pending on the Dir, the callback or promise answered later as Node would:
  // an asynchronous close waits in the thread pool (see fs.close above). With a read pending, Node queues the close
  // behind it and calls `close` again once the read is done: this one, which then closes at once. Counted off only
  // once closed (a close counted off while queued let one run hold 5,000 Dirs: helper-71).
  replace(dirProto, 'close', function closeCounted(this: object, ...args: unknown[]) {
    const callback = args[0];
    if (callback !== undefined && typeof callback !== 'function') return apply(dirClose, this, args);
    try {
      apply(dirCloseSync, this, []);
    } catch (err) {
      // Closed already, or an operation pending: Node's own close answers (and queues behind a pending read).
      if ((err as { code?: unknown }).code === 'ERR_DIR_CONCURRENT_OPERATION' || (err as { code?: unknown }).code === 'ERR_DIR_CLOSED') {
        return apply(dirClose, this, args);
      }
      if (typeof callback === 'function') return void modules.process.nextTick(callback as AnyFunction, err);
      return Promise.reject(err);
    }
    dirs.closed(this);
    if (typeof callback === 'function') return void modules.process.nextTick(callback as AnyFunction, null);
    return Promise.resolve();
  });
  replace(dirProto, 'closeSync', function closeSyncCounted(this: object, ...args: unknown[]) {
    const result = apply(dirCloseSync, this, args);
    dirs.closed(this);
    return result;
  });
  // Iteration closes the Dir at its end through the instance's promisified `close`, taken at construction: the
  // one above.

  // A Blob backed by a file opens a descriptor for each reader of it, inside Node, none counted: 3,000 readers held
  // 3,000 of the cell's (helper-71). Refused, as the permission model refuses what it does not allow.
  if (typeof m.openAsBlob === 'function') {
    replace(m, 'openAsBlob', () => {
      throw Object.assign(new Error("fs.openAsBlob is not available to agent code: each reader of its Blob holds a descriptor of the cell's that RUN_OPEN_FILES cannot count (read the file, then make a Blob of it)"), { code: 'ERR_ACCESS_DENIED' });
    });
  }

  const report = modules.process.report;
  const writeReport = report.writeReport.bind(report);
  pin(modules.process, 'report', Object.freeze({
    getReport: report.getReport.bind(report),
    writeReport: (file?: string, err?: Error) => {
      if (file === undefined || file === 'stdout' || file === 'stderr') return refuse(`process.report.writeReport(${String(file)})`);
      return writeReport(file, err);
    },
  }));

  // ES modules importing { writeSync } from 'node:fs' (or from 'node:fs/promises', 'node:tty') see the guarded values.
  syncBuiltinESMExports();
  return { writeLog: (text: string) => writeAll(writeSync, 1, text), openDescriptors: () => own.size + closeWhenIdle.size + dirs.size + fileHandles.size, openSockets: () => socketCount + resolvers.held() };
}

/**
 * A FileHandle keeps its descriptor under a symbol (`kFd`) any code can write, and every operation reads it through
 * the class's `fd` getter: the getter now answers only when that number is its native handle's (`kHandle`), and
 * the native class can no longer be reached to make a handle for a number. Fails closed if Node's layout changed.
 */
interface FileHandleWall {
  /** A FileHandle agent code holds: its operations are counted, and its close waits for them. Returns its native handle. */
  adopt(handle: object): object;
  /** Whether `handle` is a FileHandle adopted here. */
  adopted(handle: object): boolean;
  /** Whether a native handle still has its descriptor. */
  holdsDescriptor(nativeHandle: object): boolean;
  /** Runs `act` (an operation on `handle` through fs.promises) counted as in flight on it. */
  operation<T>(handle: object, act: () => Promise<T>): Promise<T>;
}

/** FileHandle methods that act on the descriptor (each returns a promise). */
const FILE_HANDLE_OPERATIONS = ['appendFile', 'chmod', 'chown', 'datasync', 'sync', 'read', 'readv', 'readFile', 'stat', 'truncate', 'utimes', 'write', 'writev', 'writeFile'] as const;

function guardFileHandles(handle: object, refuse: (what: string) => never, closeNow: AnyFunction): FileHandleWall {
  const symbol = (description: string) => Object.getOwnPropertySymbols(handle).find((s) => s.description === description);
  const kFd = symbol('kFd');
  const kHandle = symbol('kHandle');
  const proto = Object.getPrototypeOf(handle) as object;
  const native = kHandle ? ((handle as Record<symbol, object | undefined>)[kHandle] ?? null) : null;
  // The native class's own `fd` accessor: it answers only for a real native handle ("Illegal invocation" for an
  // object dressed as one, which a FileHandle's writable kHandle would otherwise accept).
  const nativeFd = native ? Object.getOwnPropertyDescriptor(Object.getPrototypeOf(native) as object, 'fd')?.get : undefined;
  if (!kFd || !kHandle || !native || !nativeFd || typeof nativeFd.call(native) !== 'number' || !Object.getOwnPropertyDescriptor(proto, 'fd')?.get) {
    throw new Error('the descriptor wall does not know this Node version\'s FileHandle');
  }
  const realFd = (candidate: unknown): unknown => {
    try {
      return nativeFd.call(candidate);
    } catch {
      return undefined;
    }
  };
  Object.defineProperty(proto, 'fd', {
    get(this: Record<symbol, unknown>) {
      const fd = this[kFd];
      if (fd === -1 || fd === realFd(this[kHandle])) return fd;
      return refuse(`FileHandle.fd (${String(fd)})`);
    },
    enumerable: false,
    configurable: false,
  });
  const nativeProto = Object.getPrototypeOf(native) as Record<string, AnyFunction>;
  pin(nativeProto, 'constructor', function refusedHandle() {
    return refuse('a native FileHandle for a descriptor');
  });
  // Every FileHandle's close (agent code's, and those Node's own helpers open: fs.promises.readFile and the like)
  // ends in its native handle's asynchronous close, which waits in the thread pool a run can keep busy; a worker
  // retired meanwhile never closed them, and their descriptors stayed the cell's (300 of 300 here). Closed at once
  // instead: the native handle gives its descriptor up (`releaseFD`, so it will not close it again) and it is
  // closed now; the promise Node awaits is already settled. Not while an operation of agent code's is in flight on
  // it: its number, free for the cell at once, would send the operation to another file (helper-72). Node's own
  // count of them (`kRefs`) is the handle's, which agent code can write, so the wall keeps its own: the close then
  // waits for the last of them, and a worker retired meanwhile closes the handle as its thread ends (Node closes
  // a FileHandle nobody closed).
  const releaseFD = nativeProto.releaseFD;
  const nativeClose = nativeProto.close;
  if (typeof releaseFD !== 'function' || typeof nativeClose !== 'function') throw new Error("the descriptor wall does not know this Node version's FileHandle");
  /** Agent code's FileHandles by their native handle, and the operations in flight on each. */
  const owners = new WeakMap<object, object>();
  /** Each adopted FileHandle's native handle, as it was at its open (`kHandle` is writable). */
  const nativeOf = new WeakMap<object, object>();
  const inFlight = new WeakMap<object, number>();
  /** Native handles whose close waits for operations in flight: how to answer it. */
  const waiting = new WeakMap<object, { resolve: () => void; reject: (err: unknown) => void }>();
  const closeHere = (nativeHandle: object, fd: number) => {
    apply(releaseFD, nativeHandle, []);
    closeNow(fd);
  };
  const settle = (js: object) => {
    const left = (inFlight.get(js) ?? 1) - 1;
    inFlight.set(js, left);
    if (left > 0) return;
    const nativeHandle = (js as Record<symbol, object>)[kHandle];
    const answer = nativeHandle && owners.get(nativeHandle) === js ? waiting.get(nativeHandle) : undefined;
    if (!answer) return;
    waiting.delete(nativeHandle);
    const fd = realFd(nativeHandle);
    try {
      if (typeof fd === 'number' && fd >= 0) closeHere(nativeHandle, fd);
      answer.resolve();
    } catch (err) {
      answer.reject(err);
    }
  };
  const operation = <T>(js: object, act: () => Promise<T>): Promise<T> => {
    inFlight.set(js, (inFlight.get(js) ?? 0) + 1);
    let result: Promise<T>;
    try {
      result = act();
    } catch (err) {
      settle(js);
      throw err;
    }
    return apply(then, result, [
      (value: T) => (settle(js), value),
      (err: unknown) => {
        settle(js);
        throw err;
      },
    ]) as Promise<T>;
  };
  for (const name of FILE_HANDLE_OPERATIONS) {
    const original = (proto as Record<string, AnyFunction>)[name];
    if (typeof original !== 'function') continue;
    Object.defineProperty(proto, name, {
      value: function counted(this: object, ...args: unknown[]) {
        return operation(this, () => apply(original, this, args) as Promise<unknown>);
      },
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  pin(nativeProto, 'close', function closeNowNative(this: object) {
    // Not a native handle, or closed already: Node's own close answers as it would.
    const fd = realFd(this);
    if (typeof fd !== 'number' || fd < 0) return apply(nativeClose, this, []);
    const js = owners.get(this);
    if (js && (inFlight.get(js) ?? 0) > 0) {
      if (waiting.has(this)) return Promise.reject(Object.assign(new Error('EBADF: the file handle is closing'), { code: 'EBADF' }));
      return new Promise<void>((resolve, reject) => waiting.set(this, { resolve, reject }));
    }
    try {
      closeHere(this, fd);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  });
  return {
    adopt(js: object) {
      const nativeHandle = (js as Record<symbol, object>)[kHandle]!;
      owners.set(nativeHandle, js);
      nativeOf.set(js, nativeHandle);
      return nativeHandle;
    },
    adopted: (js: object) => nativeOf.has(js),
    holdsDescriptor(nativeHandle: object) {
      const fd = realFd(nativeHandle);
      return typeof fd === 'number' && fd >= 0;
    },
    operation,
  };
}

/** How long the worker's own log waits for a full pipe before it drops the line: a stuck log must not hang runs. */
const FULL_PIPE_MAX_WAIT_MS = 2000;

/**
 * Writes all of `text` to `fd` before returning: a worker thread's log must reach the pipe before the cell may
 * terminate the thread (server/logger.ts). A pipe can be non-blocking (the front's own stdout, inherited): a short
 * write goes on with the rest, a full pipe is waited for.
 */
export function writeAll(writeSync: typeof fs.writeSync, fd: number, text: string): void {
  let rest = Buffer.from(text, 'utf8');
  const waitedSince = Date.now();
  let sleeper: Int32Array | null = null;
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeSync(fd, rest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() - waitedSince > FULL_PIPE_MAX_WAIT_MS) return;
      sleeper ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(sleeper, 0, 0, 1);
    }
  }
}
