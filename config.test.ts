import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { applyEnv, knownKeys, parseConfig } from './config.js';
import { ConfigError } from './errors.js';

function errorOf(raw: unknown): ConfigError {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('config', () => {
  it('fills every default from an empty object', () => {
    const c = parseConfig({});
    expect(c.windows).toMatchObject({ size_ms: 60_000, slide_ms: 10_000, allowed_lateness_ms: 5_000 });
    expect(c.edge_rules.topic).toBe('edge-rules');
  });

  it('names the bad key and what is accepted', () => {
    expect(errorOf({ kafka: { brokrs: ['x:1'] } }).key).toBe('kafka.brokrs');
    expect(errorOf({ kafka: { brokrs: ['x:1'] } }).message).toMatch(/accepted here: brokers, client_id/);
    expect(errorOf({ windows: { slide_ms: 7_000 } }).key).toBe('windows.slide_ms');
    expect(errorOf({ rules: { allow: ['asn:x'] } }).key).toBe('rules.allow.0');
    expect(errorOf({ nope: 1 }).message).toMatch(/accepted here: kafka, input/);
    expect(knownKeys(['scorer', 'policy'])).toEqual(['threshold', 'min_requests', 'volume_weight', 'population_floor', 'adapt_after_windows', 'surge']);
  });

  it('takes environment overrides', () => {
    const raw = applyEnv({}, { BURSTWATCH__KAFKA__BROKERS: 'a:1,b:2', BURSTWATCH__WINDOWS__SLIDE_MS: '5000', OTHER: 'x' });
    expect(parseConfig(raw)).toMatchObject({ kafka: { brokers: ['a:1', 'b:2'] }, windows: { slide_ms: 5000 } });
  });
});

describe('README', () => {
  it('shows exactly the defaults parseConfig gives', () => {
    const md = readFileSync(fileURLToPath(new URL('./README.md', import.meta.url)), 'utf8');
    const block = /Defaults:\n\n```json\n([\s\S]*?)```/.exec(md)?.[1];
    expect(block).toBeDefined();
    expect(JSON.parse(block as string)).toEqual(JSON.parse(JSON.stringify(parseConfig({}))));
  });
});
