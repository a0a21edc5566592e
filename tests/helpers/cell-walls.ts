/**
 * Both ways a cell can be walled, for `describe.each`: as root (an OS user of its own per cell, the default) and as
 * one OS user with the front (the Docker image's `node`, or CELL_UID_BASE=0), where the permission model and the
 * JS guards are the walls.
 */
export const CELL_WALL_MODES: [name: string, env: Record<string, string>][] = [
  ['cells with OS users of their own where root', {}],
  ["cells as the front's own OS user", { CELL_UID_BASE: '0' }],
];
