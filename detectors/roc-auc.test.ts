import { describe, expect, it } from 'vitest';
import { rocAuc } from './roc-auc.js';

describe('rocAuc', () => {
  it('is 1 for a perfect ranking, 0 for a reversed one, 0.5 for ties, NaN with one class', () => {
    expect(rocAuc([0.1, 0.2, 0.9], [0, 0, 1])).toBe(1);
    expect(rocAuc([0.9, 0.2, 0.1], [0, 0, 1])).toBe(0);
    expect(rocAuc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
    expect(rocAuc([0.1, 0.2], [0, 0])).toBeNaN();
  });
});
