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
 * search). Scoring then walks exactly `height` levels per tree with no data-dependent branch:
 * `i = 2i + 1 + (x[f] >= t)`. The score is 2^(−E[h(x)] / c(ψ)) in (0, 1], higher meaning more
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

  /** {@link score} of `n` rows laid out row-major in `x` (n × features), without copying. */
  scoreFlat(x: Float64Array, n: number): Float64Array {
    const m = this.model;
    if (!m) throw new Error('IsolationForest.score: fit the forest (or restore a saved one) first');
    const { features: f, height, feature, threshold, leafDepth } = m;
    if (x.length < n * f) throw new RangeError(`IsolationForest.scoreFlat: ${x.length} values for ${n} rows of ${f} features`);
    const inner = (1 << height) - 1;
    const leaves = 1 << height;
    const total = new Float64Array(n);
    // Blocks of rows, each walked through every tree: a block (a few KB) and the whole forest
    // (~12 KB a tree) stay in cache, where a tree-major pass would stream all rows once per tree.
    for (let r0 = 0; r0 < n; r0 += ROW_BLOCK) {
      const r1 = Math.min(n, r0 + ROW_BLOCK);
      for (let t = 0; t < this.trees; t++) {
        const nb = t * inner;
        const lb = t * leaves - inner;
        // Four rows at a time: each walk is a chain of dependent loads, so independent walks
        // side by side let the CPU overlap their latencies (about 3× the rows per second).
        let r = r0;
        for (; r + 4 <= r1; r += 4) {
          const b0 = r * f;
          const b1 = b0 + f;
          const b2 = b1 + f;
          const b3 = b2 + f;
          let i0 = 0;
          let i1 = 0;
          let i2 = 0;
          let i3 = 0;
          for (let d = 0; d < height; d++) {
            const k0 = nb + i0;
            const k1 = nb + i1;
            const k2 = nb + i2;
            const k3 = nb + i3;
            i0 = 2 * i0 + 1 + Number((x[b0 + (feature[k0] as number)] as number) >= (threshold[k0] as number));
            i1 = 2 * i1 + 1 + Number((x[b1 + (feature[k1] as number)] as number) >= (threshold[k1] as number));
            i2 = 2 * i2 + 1 + Number((x[b2 + (feature[k2] as number)] as number) >= (threshold[k2] as number));
            i3 = 2 * i3 + 1 + Number((x[b3 + (feature[k3] as number)] as number) >= (threshold[k3] as number));
          }
          total[r] = (total[r] as number) + (leafDepth[lb + i0] as number);
          total[r + 1] = (total[r + 1] as number) + (leafDepth[lb + i1] as number);
          total[r + 2] = (total[r + 2] as number) + (leafDepth[lb + i2] as number);
          total[r + 3] = (total[r + 3] as number) + (leafDepth[lb + i3] as number);
        }
        for (; r < r1; r++) {
          const base = r * f;
          let i = 0;
          for (let d = 0; d < height; d++) {
            const k = nb + i;
            i = 2 * i + 1 + Number((x[base + (feature[k] as number)] as number) >= (threshold[k] as number));
          }
          total[r] = (total[r] as number) + (leafDepth[lb + i] as number);
        }
      }
    }
    const out = new Float64Array(n);
    const scale = -1 / (this.trees * m.norm);
    for (let r = 0; r < n; r++) out[r] = 2 ** ((total[r] as number) * scale);
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
/** Rows scored together through every tree (64 rows × 10 features = 5 KB). */
const ROW_BLOCK = 64;

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
