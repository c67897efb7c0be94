import { Random } from '../random.js';

/**
 * Isolation forest (Liu, Ting & Zhou, "Isolation Forest", ICDM 2008), CONTRACTS §6.
 *
 * Written here, not taken from `ml-isolation-forest` 0.1.0: that package trains every tree on
 * the whole set (no ψ subsampling, so fit time and memory grow with the data and swamping
 * goes unchecked), keeps training rows in its leaves, draws from Math.random (no seed, so no
 * replay), and cannot save a model. It stays as the baseline in bench/isolation-forest.ts.
 *
 * Each tree is grown on ψ = sampleSize rows drawn without replacement, to the height limit
 * ⌈log2 ψ⌉ (Liu et al. §4), and stored as a complete binary tree in flat typed arrays:
 * node i has children 2i+1 and 2i+2. A branch that stops early (one row left, or rows that
 * cannot be split) is padded down to the height limit with pass-through nodes (threshold
 * +∞) that lead to a leaf holding its path length: depth + c(size) for the rows it isolated
 * no further (c(n) = 2H(n−1) − 2(n−1)/n, the average path length of an unsuccessful BST
 * search). Scoring then walks exactly `height` levels per tree with no data-dependent branch,
 * in a WebAssembly kernel (see {@link Kernel} below). The score is 2^(−E[h(x)] / c(ψ)) in (0, 1], higher meaning more
 * anomalous, as in the paper (scikit-learn's `score_samples` is its negation).
 *
 * Missing features: a value that is not finite or absent (a row shorter than the model's) goes
 * left at every split on it, as if it were the smallest value, in fitting and in scoring alike.
 * Extra features are ignored.
 */
export class IsolationForest {
  /** Trees in the forest. Default 100. */
  readonly trees: number;
  /** Rows per tree (ψ). Default 256; fewer when fit on fewer rows. */
  readonly sampleSize: number;
  /** Seed of the row and split draws: the same seed and rows give the same model. Default 0. */
  readonly seed: number;
  private model: Model | null = null;

  constructor(options: IsolationForestOptions = {}) {
    const { trees = 100, sampleSize = 256, seed = 0 } = options;
    if (!Number.isInteger(trees) || trees < 1 || trees > 10_000) throw new RangeError(`IsolationForest: trees must be an integer in [1, 10000], got ${trees}`);
    if (!Number.isInteger(sampleSize) || sampleSize < 2 || sampleSize > 65_536) {
      throw new RangeError(`IsolationForest: sampleSize must be an integer in [2, 65536], got ${sampleSize}`);
    }
    if (!Number.isInteger(seed)) throw new RangeError(`IsolationForest: seed must be an integer, got ${seed}`);
    this.trees = trees;
    this.sampleSize = sampleSize;
    this.seed = seed;
  }

  /** Whether {@link fit} (or {@link IsolationForest.fromJSON}) has given it a model. */
  get fitted(): boolean {
    return this.model !== null;
  }

  /** Features per row the model was fit on. */
  get features(): number {
    return this.model?.features ?? 0;
  }

  /**
   * Grows the forest on `rows` (at least 2, each an array of numbers, all of one length ≥ 1).
   * Non-finite values are treated as missing. Throws a RangeError on fewer rows or ragged ones.
   */
  fit(rows: readonly ArrayLike<number>[]): this {
    if (rows.length < 2) throw new RangeError(`IsolationForest.fit: needs at least 2 rows, got ${rows.length}`);
    const f = (rows[0] as ArrayLike<number>).length;
    if (f < 1) throw new RangeError('IsolationForest.fit: rows have no features');
    for (let r = 0; r < rows.length; r++) {
      if ((rows[r] as ArrayLike<number>).length !== f) throw new RangeError(`IsolationForest.fit: row ${r} has ${(rows[r] as ArrayLike<number>).length} features, row 0 has ${f}`);
    }
    const psi = Math.min(this.sampleSize, rows.length);
    const height = Math.max(1, Math.ceil(Math.log2(psi)));
    const inner = (1 << height) - 1;
    const leaves = 1 << height;
    const feature = new Int32Array(this.trees * inner);
    const threshold = new Float64Array(this.trees * inner);
    const leafDepth = new Float64Array(this.trees * leaves);
    const rng = new Random(this.seed, 0x1f05e57);
    // Column-major copy of the sample of one tree, reused: the split search reads one column.
    const sample = new Float64Array(psi * f);
    const idx = new Int32Array(psi);
    const pool = new Int32Array(rows.length);
    // One flat copy, missing values as NaN: drawing ψ rows per tree from an array of arrays
    // (scattered on the heap, of any ArrayLike kind) cost more than growing the trees.
    const data = flatten(rows, f);
    const order = new Int32Array(f);
    // At most one pending sibling per level, plus the node being split: 4 numbers each.
    const stack = new Int32Array(4 * (height + 2));

    for (let i = 0; i < rows.length; i++) pool[i] = i;
    for (let t = 0; t < this.trees; t++) {
      // ψ rows without replacement: a partial Fisher–Yates over the row indices (the pool
      // needs no reset between trees: a shuffle of any permutation is uniform).
      for (let i = 0; i < psi; i++) {
        const j = i + rng.int(rows.length - i);
        const tmp = pool[i] as number;
        pool[i] = pool[j] as number;
        pool[j] = tmp;
        const at = (pool[i] as number) * f;
        for (let k = 0; k < f; k++) sample[k * psi + i] = data[at + k] as number;
        idx[i] = i;
      }
      const nodeBase = t * inner;
      const leafBase = t * leaves;
      // Depth-first with an explicit stack of (node, depth, start, end).
      let top = 0;
      stack[0] = 0;
      stack[1] = 0;
      stack[2] = 0;
      stack[3] = psi;
      top = 4;
      while (top > 0) {
        top -= 4;
        const node = stack[top] as number;
        const depth = stack[top + 1] as number;
        const start = stack[top + 2] as number;
        const end = stack[top + 3] as number;
        const n = end - start;
        // A random feature that can split these rows (max > min over its finite values): draw
        // without replacement until one can, which is uniform over those that can, and scans
        // one column per node instead of every column.
        let k = -1;
        let a = 0;
        let b = 0;
        if (depth < height && n > 1) {
          for (let q = 0; q < f; q++) order[q] = q;
          for (let left = f; left > 0 && k < 0; left--) {
            const pick = rng.int(left);
            const c = order[pick] as number;
            order[pick] = order[left - 1] as number;
            let lo = Infinity;
            let hi = -Infinity;
            const col = c * psi;
            for (let i = start; i < end; i++) {
              const v = sample[col + (idx[i] as number)] as number;
              if (v < lo) lo = v;
              if (v > hi) hi = v;
            }
            if (hi > lo) {
              k = c;
              a = lo;
              b = hi;
            }
          }
        }
        if (k < 0) {
          padLeaf(feature, threshold, leafDepth, nodeBase, leafBase, height, node, depth, depth + averagePathLength(n));
          continue;
        }
        // Uniform in (a, b]: a value x goes right when x >= split, so both sides get rows.
        let split = a + (b - a) * (1 - rng.next());
        if (!(split > a)) split = b;
        feature[nodeBase + node] = k;
        threshold[nodeBase + node] = split;
        // Partition idx[start, end): left (x < split, or missing) first.
        const col = k * psi;
        let i = start;
        let j = end - 1;
        while (i <= j) {
          const v = sample[col + (idx[i] as number)] as number;
          if (v >= split) {
            const tmp = idx[i] as number;
            idx[i] = idx[j] as number;
            idx[j] = tmp;
            j--;
          } else i++;
        }
        // Right pushed first so the left subtree is grown first.
        stack[top] = 2 * node + 2;
        stack[top + 1] = depth + 1;
        stack[top + 2] = i;
        stack[top + 3] = end;
        stack[top + 4] = 2 * node + 1;
        stack[top + 5] = depth + 1;
        stack[top + 6] = start;
        stack[top + 7] = i;
        top += 8;
      }
    }
    this.model = { features: f, psi, height, feature, threshold, leafDepth, norm: averagePathLength(psi) };
    return this;
  }

  /**
   * Anomaly scores of `rows` in (0, 1]: 2^(−E[h(x)]/c(ψ)), about 0.5 for typical rows and
   * toward 1 for rows isolated in few splits. Throws if the forest is not fit.
   */
  score(rows: readonly ArrayLike<number>[]): Float64Array {
    const m = this.model;
    if (!m) throw new Error('IsolationForest.score: fit the forest (or restore a saved one) first');
    // One flat copy, so the walk reads one array.
    return this.scoreFlat(flatten(rows, m.features), rows.length);
  }

  /** {@link score} of `n` rows laid out row-major in `x` (n × features). */
  scoreFlat(x: Float64Array, n: number): Float64Array {
    const m = this.model;
    if (!m) throw new Error('IsolationForest.score: fit the forest (or restore a saved one) first');
    const f = m.features;
    if (x.length < n * f) throw new RangeError(`IsolationForest.scoreFlat: ${x.length} values for ${n} rows of ${f} features`);
    m.kernel ??= new Kernel(m, this.trees);
    const total = m.kernel.pathLengths(x, n);
    const out = new Float64Array(n);
    // 2^(−E[h]/c) as e^(−E[h]·ln 2/c): V8's exp is about 5× faster than its pow (8% of the scoring time).
    const scale = -Math.LN2 / (this.trees * m.norm);
    for (let r = 0; r < n; r++) out[r] = Math.exp((total[r] as number) * scale);
    return out;
  }

  /** The model as JSON-safe data (typed arrays in base64), for {@link IsolationForest.fromJSON}. */
  toJSON(): IsolationForestJSON {
    const m = this.model;
    if (!m) throw new Error('IsolationForest.toJSON: nothing to save, the forest is not fit');
    const b64 = (a: Int32Array | Float64Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
    return {
      v: 1,
      trees: this.trees,
      sample_size: this.sampleSize,
      seed: this.seed,
      features: m.features,
      psi: m.psi,
      height: m.height,
      feature: b64(m.feature),
      threshold: b64(m.threshold),
      leaf_depth: b64(m.leafDepth),
    };
  }

  /** Restores a forest saved by {@link toJSON}; it scores exactly as the saved one. Throws a TypeError naming what is wrong. */
  static fromJSON(v: unknown): IsolationForest {
    const W = 'IsolationForest.fromJSON';
    if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed(W, 'expected an object');
    const o = v as Record<string, unknown>;
    if (o.v !== 1) malformed(W, `unsupported version 'v': ${JSON.stringify(o.v)} (expected 1)`);
    const int = (k: string, min: number, max: number): number => {
      const x = o[k];
      if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) malformed(W, `'${k}' must be an integer in [${min}, ${max}], got ${JSON.stringify(x)}`);
      return x;
    };
    const forest = new IsolationForest({ trees: int('trees', 1, 10_000), sampleSize: int('sample_size', 2, 65_536), seed: int('seed', -(2 ** 53), 2 ** 53) });
    const features = int('features', 1, 1 << 20);
    const psi = int('psi', 1, forest.sampleSize);
    const height = int('height', 1, 16);
    if (height !== Math.max(1, Math.ceil(Math.log2(psi)))) malformed(W, `'height' ${height} does not match psi ${psi}`);
    const inner = (1 << height) - 1;
    const bytes = (k: string, n: number, size: number): Buffer => {
      const s = o[k];
      if (typeof s !== 'string') malformed(W, `'${k}' must be a base64 string`);
      const b = Buffer.from(s, 'base64');
      if (b.length !== n * size) malformed(W, `'${k}' must decode to ${n * size} bytes, got ${b.length}`);
      return b;
    };
    const fb = bytes('feature', forest.trees * inner, 4);
    const tb = bytes('threshold', forest.trees * inner, 8);
    const lb = bytes('leaf_depth', forest.trees * (1 << height), 8);
    // Copies: a decoded Buffer may not be aligned for a typed-array view.
    const feature = new Int32Array(forest.trees * inner);
    new Uint8Array(feature.buffer).set(fb);
    const threshold = new Float64Array(forest.trees * inner);
    new Uint8Array(threshold.buffer).set(tb);
    const leafDepth = new Float64Array(forest.trees * (1 << height));
    new Uint8Array(leafDepth.buffer).set(lb);
    for (let i = 0; i < feature.length; i++) {
      const k = feature[i] as number;
      if (k < 0 || k >= features) malformed(W, `'feature' ${i} is ${k}, outside [0, ${features})`);
      if (Number.isNaN(threshold[i])) malformed(W, `'threshold' ${i} is NaN`);
    }
    for (let i = 0; i < leafDepth.length; i++) {
      const d = leafDepth[i] as number;
      if (!(d >= 0 && d < 1e6)) malformed(W, `'leaf_depth' ${i} is ${d}`);
    }
    forest.model = { features, psi, height, feature, threshold, leafDepth, norm: averagePathLength(psi) };
    return forest;
  }
}

/** Options of {@link IsolationForest}. */
export interface IsolationForestOptions {
  /** Trees. Default 100. */
  trees?: number;
  /** Rows per tree (ψ). Default 256. */
  sampleSize?: number;
  /** Seed. Default 0. */
  seed?: number;
}

/** A saved {@link IsolationForest} (version 1). */
export interface IsolationForestJSON {
  v: 1;
  trees: number;
  sample_size: number;
  seed: number;
  features: number;
  psi: number;
  height: number;
  /** Int32 little-endian, trees × (2^height − 1). */
  feature: string;
  /** Float64 little-endian, trees × (2^height − 1). */
  threshold: string;
  /** Float64 little-endian, trees × 2^height. */
  leaf_depth: string;
}

interface Model {
  features: number;
  psi: number;
  height: number;
  feature: Int32Array;
  threshold: Float64Array;
  leafDepth: Float64Array;
  /** c(ψ). */
  norm: number;
  /** The scoring kernel, laid out on first use. */
  kernel?: Kernel;
}

/**
 * Rows copied row-major into one array of `f` values each: non-finite values and the values a
 * short row lacks become NaN (missing, which goes left at every split), extra values are dropped.
 * Fitting and scoring read rows through this one copy, so they agree on what is missing.
 */
function flatten(rows: readonly ArrayLike<number>[], f: number): Float64Array {
  const out = new Float64Array(rows.length * f);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] as ArrayLike<number>;
    for (let k = 0; k < f; k++) {
      const v = k < row.length ? (row[k] as number) : Number.NaN;
      out[r * f + k] = Number.isFinite(v) ? v : Number.NaN;
    }
  }
  return out;
}

/** Fills the subtree under `node` (at `depth`) with pass-through nodes whose leaves all hold `pathLength`. */
function padLeaf(
  feature: Int32Array,
  threshold: Float64Array,
  leafDepth: Float64Array,
  nodeBase: number,
  leafBase: number,
  height: number,
  node: number,
  depth: number,
  pathLength: number,
): void {
  const inner = (1 << height) - 1;
  let first = node;
  let count = 1;
  for (let d = depth; d < height; d++) {
    for (let i = first; i < first + count; i++) {
      feature[nodeBase + i] = 0;
      threshold[nodeBase + i] = Infinity; // x >= +∞ is false for every x: always left
    }
    first = 2 * first + 1;
    count *= 2;
  }
  for (let i = first; i < first + count; i++) leafDepth[leafBase + (i - inner)] = pathLength;
}

const EULER_GAMMA = 0.5772156649015329;

/**
 * c(n): the average path length of an unsuccessful search in a binary search tree of n keys,
 * 2H(n−1) − 2(n−1)/n with H(i) ≈ ln i + γ (Liu et al. 2008, eq. 1); c(1) = 0, c(2) = 1.
 */
export function averagePathLength(n: number): number {
  if (n <= 1) return 0;
  if (n === 2) return 1;
  return 2 * (Math.log(n - 1) + EULER_GAMMA) - (2 * (n - 1)) / n;
}

function malformed(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}

/*
 * Scoring kernel: WebAssembly, emitted below as bytes (no toolchain). The walk is ~800 dependent
 * load chains per row (100 trees × 8 levels); V8 compiles it from JavaScript with bounds checks,
 * spills and reloads of typed-array fields, about 3× slower than the same loop in WebAssembly.
 *
 * Per block of ROW_BLOCK rows, transposed to columns, and per tree:
 * - the top TOP levels (7 nodes, the same for every row) are compared for two rows at a time
 *   (f64x2.ge), all 7 at once with no dependency between them; bitselects then pick each row's
 *   path, giving the node it reaches at level TOP;
 * - from there a scalar walk, LANES rows side by side so their dependent loads overlap:
 *   `i = (i << 1) | (x[f] >= t)` with node i's children at 2i and 2i + 1 (node 1 the root).
 * Both compare with f64 >= like the fitting did, so the leaves (and scores) are exactly those of
 * a plain walk; NaN (missing) compares false and goes left.
 *
 * Memory: each tree, padded to at least TOP levels with pass-through nodes, takes stride =
 * 2^h × 24 bytes: node i (1 ≤ i < 2^h) at 16i holds the byte offset of its feature's column in
 * the transposed block (i32) and its threshold (f64, at 16i + 8); leaf i (2^h ≤ i < 2^(h+1)) at
 * 2^h·8 + 8i holds its path length. After the trees: a chunk of input rows, their totals, the
 * transposed block and the level-TOP node of each row of the block.
 */

/** Rows of a block: transposed (128 × 10 features × 8 bytes = 10 KB) it stays in L1 with one tree (6 KB). */
const ROW_BLOCK = 128;
/** Levels compared all at once for two rows at a time. */
const TOP = 3;
/** Rows walked side by side below the top levels. */
const LANES = 8;
/** Rows copied into the kernel's memory per call: 8192, or fewer so that they take at most 8 MB. */
const CHUNK = 8192;
const CHUNK_BYTES = 8 << 20;
/** WebAssembly memories are addressed by 32 bits; V8 gives at most 4 GB. */
const MAX_KERNEL_BYTES = 2 ** 31;

/** One forest laid out in its own WebAssembly memory. */
class Kernel {
  private readonly f64: Float64Array;
  private readonly run: (...args: number[]) => void;
  private readonly args: number[];
  private readonly xAt: number;
  private readonly totalAt: number;
  private readonly features: number;
  /** Rows per call of the kernel. */
  private readonly chunk: number;

  constructor(m: Model, trees: number) {
    const { features: f, height } = m;
    const h = Math.max(TOP, height);
    const stride = (1 << h) * 24;
    const leafOff = (1 << h) * 8;
    const xAt = trees * stride;
    const chunk = Math.max(1, Math.min(CHUNK, Math.floor(CHUNK_BYTES / (8 * f))));
    const totalAt = xAt + chunk * f * 8;
    const blockAt = totalAt + chunk * 8;
    const topAt = blockAt + ROW_BLOCK * f * 8;
    if (topAt + ROW_BLOCK * 8 > MAX_KERNEL_BYTES) {
      throw new RangeError(
        `IsolationForest.score: ${trees} trees of height ${h} over ${f} features need ${Math.ceil((topAt + ROW_BLOCK * 8) / 2 ** 20)} MB of scoring memory, over ${MAX_KERNEL_BYTES / 2 ** 20} MB; use fewer trees, a smaller sampleSize or fewer features`,
      );
    }
    const memory = new wasm.Memory({ initial: Math.ceil((topAt + ROW_BLOCK * 8) / 65_536) });
    kernelModule ??= new wasm.Module(kernelBytes());
    this.run = new wasm.Instance(kernelModule, { k: { memory } }).exports.score as (...args: number[]) => void;
    const i32 = new Int32Array(memory.buffer);
    this.f64 = new Float64Array(memory.buffer);
    const inner = (1 << height) - 1;
    const leaves = 1 << height;
    // Levels added by the padding repeat each leaf below it (a pass-through node always goes left).
    const spread = 1 << (h - height);
    for (let t = 0; t < trees; t++) {
      const base = t * stride;
      for (let i = 1; i < 1 << h; i++) this.f64[(base + 16 * i + 8) / 8] = Infinity;
      for (let i = 0; i < inner; i++) {
        i32[(base + 16 * (i + 1)) / 4] = (m.feature[t * inner + i] as number) * ROW_BLOCK * 8;
        this.f64[(base + 16 * (i + 1) + 8) / 8] = m.threshold[t * inner + i] as number;
      }
      for (let i = 0; i < leaves; i++) {
        const first = (leaves + i) * spread;
        this.f64.fill(m.leafDepth[t * leaves + i] as number, (base + leafOff) / 8 + first, (base + leafOff) / 8 + first + spread);
      }
    }
    this.args = [trees, stride, h, leafOff, xAt, 0, f, totalAt, blockAt, topAt];
    this.xAt = xAt;
    this.totalAt = totalAt;
    this.features = f;
    this.chunk = chunk;
  }

  /** Sum over the trees of each row's path length. */
  pathLengths(x: Float64Array, n: number): Float64Array {
    const f = this.features;
    const total = new Float64Array(n);
    for (let s = 0; s < n; s += this.chunk) {
      const c = Math.min(this.chunk, n - s);
      this.f64.set(x.subarray(s * f, (s + c) * f), this.xAt / 8);
      this.f64.fill(0, this.totalAt / 8, this.totalAt / 8 + c);
      this.args[5] = c;
      this.run(...this.args);
      total.set(this.f64.subarray(this.totalAt / 8, this.totalAt / 8 + c), s);
    }
    return total;
  }
}

/** What the kernel uses of the WebAssembly global (which the TypeScript libraries here do not declare). */
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
interface WasmApi {
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}
type WasmModule = object;
let kernelModule: WasmModule | undefined;

/**
 * The kernel's module: memory imported as k.memory, one export
 * score(trees, stride, h, leafOff, x, n, features, total, block, top): adds each of the n rows
 * at x (row-major f64) its path length through every tree to total[r] (f64).
 */
function kernelBytes(): Uint8Array {
  const uleb = (v: number): number[] => {
    const o: number[] = [];
    do {
      const b = v & 0x7f;
      v >>>= 7;
      o.push(v ? b | 0x80 : b);
    } while (v);
    return o;
  };
  const sleb = (v: number): number[] => {
    const o: number[] = [];
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) return [...o, b];
      o.push(b | 0x80);
    }
  };
  const I32 = 0x7f;
  const V128 = 0x7b;
  const BLOCK = 0x02, LOOP = 0x03, IF = 0x04, END = 0x0b, BR = 0x0c, BR_IF = 0x0d, VOID = 0x40;
  const I32_LOAD = 0x28, F64_LOAD = 0x2b, F64_STORE = 0x39;
  const I32_LT_U = 0x49, I32_GT_U = 0x4b, I32_GE_U = 0x4f, F64_GE = 0x66;
  const I32_ADD = 0x6a, I32_SUB = 0x6b, I32_MUL = 0x6c, I32_OR = 0x72, I32_SHL = 0x74, F64_ADD = 0xa0;
  const simd = (n: number): number[] => [0xfd, ...uleb(n)];
  const V_LOAD = simd(0), V_LOAD64_SPLAT = simd(10), V_STORE = simd(11), V_AND = simd(78), V_OR = simd(80), V_BITSELECT = simd(82), F64X2_GE = simd(76);
  const params = 10;
  const [trees, stride, height, leafOff, xp, n, features, tot, xt, top] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const;
  let next = params;
  const local = (): number => next++;
  const r0 = local(), cnt = local(), t = local(), nb = local(), r = local(), d = local(), a = local(), q = local(), k = local();
  const row = Array.from({ length: LANES }, local);
  const node = Array.from({ length: LANES }, local);
  const nodes = 1 << TOP;
  const col = Array.from({ length: nodes }, local);
  const i32Locals = next - params;
  const th = Array.from({ length: nodes }, local);
  const mask = Array.from({ length: nodes }, local);
  const bit = Array.from({ length: TOP }, local);
  const pick = Array.from({ length: nodes }, local);
  const v128Locals = next - params - i32Locals;

  const c: number[] = [];
  const get = (l: number): number => c.push(0x20, ...uleb(l));
  const set = (l: number): number => c.push(0x21, ...uleb(l));
  const int = (v: number): number => c.push(0x41, ...sleb(v));
  const mem = (align: number, offset: number): number[] => [align, ...uleb(offset)];
  const pair = (v: number): void => {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setInt32(0, v, true);
    new DataView(b.buffer).setInt32(8, v, true);
    c.push(...simd(12), ...b);
  };
  /** Ends a loop: l += by, and loop again while l < bound (with no bound: while l, counting down, is not 0). */
  const step = (l: number, by: number, bound: number | null): void => {
    get(l);
    int(Math.abs(by));
    c.push(by > 0 ? I32_ADD : I32_SUB, 0x22, ...uleb(l));
    if (bound !== null) {
      get(bound);
      c.push(I32_LT_U);
    }
    c.push(BR_IF, 0, END);
  };
  /** Walks `lanes` rows from r (row k at xt + 8(r + k)) from their level-TOP node to a leaf, and adds it to their totals. */
  const walk = (lanes: number): void => {
    for (let j = 0; j < lanes; j++) {
      get(top);
      get(r);
      int(3);
      c.push(I32_SHL, I32_ADD, I32_LOAD, ...mem(2, 8 * j));
      set(node[j] as number);
    }
    get(height);
    int(TOP);
    c.push(I32_SUB);
    set(d);
    get(d);
    c.push(IF, VOID, LOOP, VOID);
    for (let j = 0; j < lanes; j++) {
      const i = node[j] as number;
      get(nb);
      get(i);
      int(4);
      c.push(I32_SHL, I32_ADD);
      set(a);
      get(i);
      int(1);
      c.push(I32_SHL);
      get(row[j] as number);
      get(a);
      c.push(I32_LOAD, ...mem(2, 0), I32_ADD, F64_LOAD, ...mem(3, 0));
      get(a);
      c.push(F64_LOAD, ...mem(3, 8), F64_GE, I32_OR);
      set(i);
    }
    step(d, -1, null);
    c.push(END);
    get(tot);
    get(r0);
    get(r);
    c.push(I32_ADD);
    int(3);
    c.push(I32_SHL, I32_ADD);
    set(a);
    for (let j = 0; j < lanes; j++) {
      get(a);
      get(a);
      c.push(F64_LOAD, ...mem(3, 8 * j));
      get(nb);
      get(leafOff);
      c.push(I32_ADD);
      get(node[j] as number);
      int(3);
      c.push(I32_SHL, I32_ADD, F64_LOAD, ...mem(3, 0), F64_ADD, F64_STORE, ...mem(3, 8 * j));
    }
  };

  // for (r0 = 0; r0 < n; r0 += ROW_BLOCK)
  int(0);
  set(r0);
  c.push(BLOCK, VOID, LOOP, VOID);
  get(r0);
  get(n);
  c.push(I32_GE_U, BR_IF, 1);
  get(n);
  get(r0);
  c.push(I32_SUB);
  set(cnt);
  get(cnt);
  int(ROW_BLOCK);
  c.push(I32_GT_U, IF, VOID);
  int(ROW_BLOCK);
  set(cnt);
  c.push(END);
  // Transpose the block: xt[f·ROW_BLOCK + r] = x[(r0 + r)·features + f].
  int(0);
  set(r);
  c.push(LOOP, VOID);
  get(xp);
  get(r0);
  get(r);
  c.push(I32_ADD);
  get(features);
  c.push(I32_MUL);
  int(3);
  c.push(I32_SHL, I32_ADD);
  set(a);
  get(xt);
  get(r);
  int(3);
  c.push(I32_SHL, I32_ADD);
  set(q);
  get(features);
  set(k);
  c.push(LOOP, VOID);
  get(q);
  get(a);
  c.push(F64_LOAD, ...mem(3, 0), F64_STORE, ...mem(3, 0));
  get(a);
  int(8);
  c.push(I32_ADD);
  set(a);
  get(q);
  int(ROW_BLOCK * 8);
  c.push(I32_ADD);
  set(q);
  step(k, -1, null);
  step(r, 1, cnt);
  // for each tree
  int(0);
  set(nb);
  get(trees);
  set(t);
  c.push(LOOP, VOID);
  for (let i = 1; i < nodes; i++) {
    get(nb);
    c.push(I32_LOAD, ...mem(2, 16 * i));
    get(xt);
    c.push(I32_ADD);
    set(col[i] as number);
    get(nb);
    c.push(...V_LOAD64_SPLAT, ...mem(3, 16 * i + 8));
    set(th[i] as number);
  }
  // Top levels, rows r and r + 1 (a last odd row pairs with a stale one, never read back).
  int(0);
  set(r);
  c.push(LOOP, VOID);
  get(r);
  int(3);
  c.push(I32_SHL);
  set(q);
  for (let i = 1; i < nodes; i++) {
    get(col[i] as number);
    get(q);
    c.push(I32_ADD, ...V_LOAD, ...mem(3, 0));
    get(th[i] as number);
    c.push(...F64X2_GE);
    set(mask[i] as number);
  }
  // bit[l]: the comparison at the level-l node on the row's path, picked among that level's
  // masks by the bits above it, the lowest first (it chooses between siblings).
  get(mask[1] as number);
  set(bit[0] as number);
  for (let l = 1; l < TOP; l++) {
    let cur = Array.from({ length: 1 << l }, (_, p) => mask[(1 << l) + p] as number);
    for (let e = l - 1; e >= 0; e--) {
      const out: number[] = [];
      for (let p = 0; p < cur.length; p += 2) {
        const dst = e === 0 ? (bit[l] as number) : (pick[(e % 2) * (nodes / 2) + out.length] as number);
        get(cur[p + 1] as number);
        get(cur[p] as number);
        get(bit[e] as number);
        c.push(...V_BITSELECT);
        set(dst);
        out.push(dst);
      }
      cur = out;
    }
  }
  get(top);
  get(q);
  c.push(I32_ADD);
  pair(nodes);
  for (let l = 0; l < TOP; l++) {
    get(bit[l] as number);
    pair(1 << (TOP - 1 - l));
    c.push(...V_AND, ...V_OR);
  }
  c.push(...V_STORE, ...mem(4, 0));
  step(r, 2, cnt);
  // The rest of each walk, LANES rows at a time, then one at a time.
  int(0);
  set(r);
  for (const lanes of [LANES, 1]) {
    c.push(BLOCK, VOID, LOOP, VOID);
    get(r);
    int(lanes);
    c.push(I32_ADD);
    get(cnt);
    c.push(I32_GT_U, BR_IF, 1);
    for (let j = 0; j < lanes; j++) {
      get(xt);
      get(r);
      int(j);
      c.push(I32_ADD);
      int(3);
      c.push(I32_SHL, I32_ADD);
      set(row[j] as number);
    }
    walk(lanes);
    get(r);
    int(lanes);
    c.push(I32_ADD);
    set(r);
    c.push(BR, 0, END, END);
  }
  get(nb);
  get(stride);
  c.push(I32_ADD);
  set(nb);
  step(t, -1, null);
  get(r0);
  int(ROW_BLOCK);
  c.push(I32_ADD);
  set(r0);
  c.push(BR, 0, END, END, END);

  const body = [2, ...uleb(i32Locals), I32, ...uleb(v128Locals), V128, ...c];
  const section = (id: number, b: number[]): number[] => [id, ...uleb(b.length), ...b];
  const name = (s: string): number[] => [s.length, ...Buffer.from(s)];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, params, ...Array<number>(params).fill(I32), 0]),
    ...section(2, [1, ...name('k'), ...name('memory'), 2, 0, 1]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('score'), 0, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}
