/** The machine the figures came from: they mean nothing without it. */
import os from 'node:os';

export interface Machine {
  cpus: number;
  cpu_model: string;
  memory_gib: number;
  node: string;
  platform: string;
  /** 1-minute load average when the bench started: other work on the machine skews every figure. */
  loadavg_at_start: number;
  loadavg_at_end: number | null;
}

export function describeMachine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpu_model: (cpus[0]?.model ?? 'unknown').replace(/\s+/g, ' ').trim(),
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    loadavg_at_start: Math.round(os.loadavg()[0] * 100) / 100,
    loadavg_at_end: null,
  };
}

export const machineLine = (m: Machine) =>
  `${m.cpus} cores (${m.cpu_model}), ${m.memory_gib} GiB RAM, Node ${m.node}, ${m.platform}; load average ${m.loadavg_at_start} at start, ${m.loadavg_at_end ?? '?'} at end`;
