import { averagePathLength, type IsolationForestJSON } from '../detectors/isolation-forest.js';

/**
 * The isolation forest's scores by the definition, in plain JavaScript: each saved tree walked
 * one row at a time (node i's children at 2i + 1 and 2i + 2, right when x[f] >= t, so NaN goes
 * left), path lengths summed, 2^(−E[h]/c(ψ)). The WebAssembly kernel must give exactly these
 * scores (detectors/isolation-forest.test.ts), and the bench runs it as the same-process peer
 * of the kernel's throughput.
 */
export function plainWalkScores(saved: IsolationForestJSON, x: Float64Array, n: number): Float64Array {
  const decode = <T extends Int32Array | Float64Array>(b64: string, Ty: new (b: ArrayBuffer) => T): T => {
    const buf = Buffer.from(b64, 'base64');
    return new Ty(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  };
  const feature = decode(saved.feature, Int32Array);
  const threshold = decode(saved.threshold, Float64Array);
  const leaf = decode(saved.leaf_depth, Float64Array);
  const inner = (1 << saved.height) - 1;
  const f = saved.features;
  const scale = -Math.LN2 / (saved.trees * averagePathLength(saved.psi));
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let total = 0;
    for (let t = 0; t < saved.trees; t++) {
      let i = 0;
      for (let d = 0; d < saved.height; d++) {
        const k = t * inner + i;
        // Number(bool), not a ternary: V8 turns the ternary into a mispredicted branch (3× slower).
        i = 2 * i + 1 + Number((x[r * f + (feature[k] as number)] as number) >= (threshold[k] as number));
      }
      total += leaf[t * (inner + 1) + i - inner] as number;
    }
    out[r] = Math.exp(total * scale);
  }
  return out;
}
