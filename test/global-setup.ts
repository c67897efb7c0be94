import { infraUp } from '../infra/index.js';

/** Brings up the real services once for every integration suite (installing them on a fresh machine). */
export default async function setup(): Promise<void> {
  const started = Date.now();
  await infraUp({ onProgress: (msg: string) => process.stderr.write(`[infra] ${msg}\n`) });
  process.stderr.write(`[infra] services ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}
