import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdgeRuleSubscriber, type EdgeRuleChange } from '../../edge/subscriber.js';
import { BurstwatchError } from '../../errors.js';
import { localEndpoints } from '../../infra/index.js';
import type { RuleChange } from '../../rules/lifecycle.js';
import { encodeSingleObject } from '../../schemas/codec.js';
import { edgeRuleToAvro, edgeRuleType, type EdgeRule, type RuleMatch } from '../../schemas/index.js';
import { EdgeRuleSink, edgeRulesConfigSchema } from '../../sinks/edge-rules.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');

/**
 * The edge side of CONTRACTS §4 on the real local Kafka: rules published by the pipeline's own
 * EdgeRuleSink (updates, tombstones, an expired rule) and raw malformed messages; a fresh
 * subscriber must hold exactly the rules in force, then follow changes; and the CLI must list
 * the same rules.
 */
describe('edge subscriber on real Kafka', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-edge-${id}`;
  const emptyTopic = `it-edge-empty-${id}`;
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });
  const sink = new EdgeRuleSink(kafka, edgeRulesConfigSchema.parse({ topic, partitions: 3 }));
  const now = Date.now();
  /** What the topic says is in force: the last valid, unexpired version of each key. */
  const model = new Map<string, EdgeRule>();
  const subs: EdgeRuleSubscriber[] = [];
  let skew = 0; // added to the wall clock of the first subscriber, to move it past expiries

  function rule(ruleId: string, match: RuleMatch, extra: Partial<EdgeRule> = {}): EdgeRule {
    return {
      rule_id: ruleId, match, action: 'challenge', mode: 'enforce', created_at: now - 60_000, updated_at: now - 1000,
      expires_at: now + 600_000, score: 0.9, reason: `test rule ${ruleId}`, rate_limit_rps: null, verdict_id: `v-${ruleId}`,
      entity_type: null, entity: null, ...extra,
    };
  }

  async function publish(changes: RuleChange[]): Promise<void> {
    await sink.writeRuleChanges(changes);
    await sink.flush();
    for (const c of changes) {
      if (c.op === 'delete' || c.rule.expires_at <= Date.now()) model.delete(c.rule.rule_id);
      else model.set(c.rule.rule_id, c.rule);
    }
  }

  /** Raw messages, as a buggy or foreign producer would write them (same default partitioner as the sink). */
  async function publishRaw(messages: { key: string; value: Buffer }[]): Promise<void> {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({ topic, acks: -1, messages });
    await producer.disconnect();
    for (const m of messages) model.delete(m.key); // a malformed last version leaves no rule under its key
  }

  const inForce = (): EdgeRule[] => [...model.values()].sort((a, b) => (a.rule_id < b.rule_id ? -1 : 1));
  const requestFor = (r: EdgeRule): Record<string, unknown> => ({ ...r.match });

  async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const at = now - 1000;
  const expired = rule('asn:65000', { asn: 65000 }, { expires_at: now - 5000 });

  beforeAll(async () => {
    await sink.connect(); // creates the compacted topic, as the service does
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: emptyTopic, numPartitions: 2, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] });
    await admin.disconnect();
    await publish([
      { op: 'upsert', at, rule: rule('asn:64512', { asn: 64512 }) },
      { op: 'upsert', at, rule: rule('ja4:t13d_bot', { ja4: 't13d_bot' }, { action: 'block' }) },
      { op: 'upsert', at, rule: rule('asn_ja4:3320|t13d_app', { asn: 3320, ja4: 't13d_app' }, { action: 'rate_limit', rate_limit_rps: 2 }) },
      { op: 'upsert', at, rule: rule('country_host:DE|shop.example', { country: 'DE', host: 'shop.example' }, { mode: 'shadow', action: 'block' }) },
      { op: 'upsert', at, rule: rule('ip:203.0.113.9', { client_ip: '203.0.113.9' }, { action: 'log' }) },
      { op: 'upsert', at, rule: rule('ua:curl', { user_agent: 'curl/8.5' }) },
      { op: 'upsert', at, rule: rule('to-delete', { asn: 1 }) },
      { op: 'upsert', at, rule: rule('to-corrupt', { asn: 2 }) },
      { op: 'upsert', at, rule: { ...expired, expires_at: now + 600_000 } }, // its next version comes already expired
    ]);
    // Updates: a new action, a new match; a tombstone; an update that is already expired.
    await publish([
      { op: 'upsert', at: at + 1, rule: rule('asn:64512', { asn: 64512 }, { action: 'block', expires_at: now + 900_000 }) },
      { op: 'upsert', at: at + 1, rule: rule('ua:curl', { user_agent: 'curl/8.5', host: 'api.example' }) },
      { op: 'delete', at: at + 1, rule: rule('to-delete', { asn: 1 }), why: 'expired' },
      { op: 'upsert', at: at + 1, rule: expired },
    ]);
    // Malformed messages: garbage bytes; a garbage version of a valid rule; a key that is not the rule id.
    await publishRaw([
      { key: 'garbage', value: Buffer.from('definitely not avro') },
      { key: 'to-corrupt', value: Buffer.from([0xc3, 0x01, 1, 2, 3]) },
      { key: 'mismatch', value: encodeSingleObject(edgeRuleType, edgeRuleToAvro(rule('someone-else', { asn: 7 }))) },
    ]);
  });

  afterAll(async () => {
    for (const s of subs) await s.stop().catch(() => undefined);
    await sink.close().catch(() => undefined);
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic, emptyTopic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('a fresh subscriber bootstraps to exactly the rules in force, and rejects the malformed ones', async () => {
    const sub = new EdgeRuleSubscriber({ brokers: localEndpoints.kafkaBrokers, topic, clock: () => Date.now() + skew });
    subs.push(sub);
    let readyEvents = 0;
    sub.on('ready', () => readyEvents++);
    await sub.start();
    expect(sub.ready).toBe(true);
    expect(readyEvents).toBe(1);
    expect(sub.rules()).toEqual(inForce());
    expect(sub.size).toBe(6);
    expect(sub.rules().map((r) => r.rule_id)).not.toContain('to-delete');
    expect(sub.rules().map((r) => r.rule_id)).not.toContain('to-corrupt');
    const c = sub.counters;
    expect(c.messages).toBe(16);
    expect(c.rejected).toMatchObject({ undecodable: 2, key_mismatch: 1 });
    expect(c.expired).toBe(1);
    expect(c.deleted).toBe(1);

    for (const r of inForce()) {
      const d = sub.match(requestFor(r));
      if (r.mode === 'shadow') expect(d.shadow.map((x) => x.rule_id)).toContain(r.rule_id);
      else expect(d.rule?.rule_id).toBe(r.rule_id);
    }
    expect(sub.match({ asn: 64512, ja4: 'x' })).toMatchObject({ action: 'block' });
    expect(sub.match({ asn: 65000 }).action).toBeNull(); // past expiry
    expect(sub.match({ asn: 1 }).action).toBeNull(); // tombstoned
    expect(sub.match({ asn: 2 }).action).toBeNull(); // last version was garbage
    expect(sub.match({ user_agent: 'curl/8.5' }).action).toBeNull(); // its match moved to a narrower one
    expect(sub.match({ user_agent: 'curl/8.5', host: 'api.example' }).action).toBe('challenge');
    expect(sub.match({ country: 'DE', host: 'shop.example' })).toMatchObject({ action: null, shadow: [{ rule_id: 'country_host:DE|shop.example' }] });
  });

  it('then follows upserts and tombstones as they arrive', async () => {
    const sub = subs[0] as EdgeRuleSubscriber;
    const seen: EdgeRuleChange[] = [];
    sub.on('change', (c) => seen.push(c));
    await publish([
      { op: 'upsert', at: at + 2, rule: rule('asn:64999', { asn: 64999 }, { action: 'rate_limit', rate_limit_rps: 0.5 }) },
      { op: 'delete', at: at + 2, rule: rule('ja4:t13d_bot', { ja4: 't13d_bot' }), why: 'calm' },
      { op: 'upsert', at: at + 2, rule: rule('ip:203.0.113.9', { client_ip: '203.0.113.9' }, { action: 'challenge', mode: 'shadow' }) },
    ]);
    await until('three changes', () => seen.length >= 3);
    expect(seen.every((c) => !c.bootstrap)).toBe(true);
    expect(seen.map((c) => [c.op, c.rule_id, c.at]).sort()).toEqual(
      [['delete', 'ja4:t13d_bot', at + 2], ['upsert', 'asn:64999', at + 2], ['upsert', 'ip:203.0.113.9', at + 2]].sort(),
    );
    expect(sub.rules()).toEqual(inForce());
    expect(sub.match({ asn: 64999 })).toMatchObject({ action: 'rate_limit', rule: { rate_limit_rps: 0.5 } });
    expect(sub.match({ ja4: 't13d_bot' }).action).toBeNull();
    expect(sub.match({ client_ip: '203.0.113.9' })).toMatchObject({ action: null, shadow: [{ rule_id: 'ip:203.0.113.9' }] });
    // A malformed message that arrives now is rejected without stopping the subscriber.
    await publishRaw([{ key: 'asn:64999', value: Buffer.from('garbage') }]);
    await until('the rejection', () => sub.counters.rejected.undecodable === 3);
    expect(sub.match({ asn: 64999 }).action).toBeNull();
    await publish([{ op: 'upsert', at: at + 3, rule: rule('asn:64999', { asn: 64999 }) }]);
    await until('the next upsert', () => sub.match({ asn: 64999 }).action === 'challenge');
  });

  it('enforces expiry on its own clock: no rule matches once expired, with no tombstone', async () => {
    const sub = subs[0] as EdgeRuleSubscriber;
    expect(sub.match({ asn: 64512 }).action).toBe('block'); // expires at now + 900 s
    expect(sub.match({ asn: 3320, ja4: 't13d_app' }).action).toBe('rate_limit'); // now + 600 s
    skew = 700_000;
    expect(sub.match({ asn: 3320, ja4: 't13d_app' }).action).toBeNull();
    expect(sub.match({ asn: 64512 }).action).toBe('block');
    expect(sub.rules().map((r) => r.rule_id)).toEqual(['asn:64512']);
    expect(sub.size).toBe(1);
    skew = 900_000;
    expect(sub.match({ asn: 64512 }).action).toBeNull();
    expect(sub.size).toBe(0);
    skew = 0;
  });

  it('an empty topic is ready at once; a missing topic is a retriable error', async () => {
    const sub = new EdgeRuleSubscriber({ brokers: localEndpoints.kafkaBrokers, topic: emptyTopic });
    subs.push(sub);
    await sub.start();
    expect(sub.ready).toBe(true);
    expect(sub.size).toBe(0);
    const missing = new EdgeRuleSubscriber({ brokers: localEndpoints.kafkaBrokers, topic: `it-edge-missing-${id}` });
    const err = await missing.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BurstwatchError);
    expect((err as BurstwatchError).retriable).toBe(true);
    await missing.stop();
  });

  it('`burstwatch rules list --json` prints the rules in force (the built CLI; npm test builds it first)', async () => {
    expect(existsSync(bin), `${bin} is missing: run npm run build`).toBe(true);
    const { code, stdout, stderr } = await runCli(['rules', 'list', '--json', '--topic', topic, '--brokers', localEndpoints.kafkaBrokers.join(',')]);
    expect(code, stderr.slice(-2000)).toBe(0);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as EdgeRule);
    expect(lines).toEqual(inForce());
    const table = await runCli(['rules', 'list', '--topic', topic, '--brokers', localEndpoints.kafkaBrokers.join(',')]);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^RULE ID\s+ACTION\s+MODE\s+MATCH\s+EXPIRES IN\s+SCORE\s+REASON$/);
    expect(table.stdout.trim().split('\n')).toHaveLength(inForce().length + 1);
  });

  it('`burstwatch rules tail` prints each change as it arrives and stops cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [bin, 'rules', 'tail', '--topic', topic, '--brokers', localEndpoints.kafkaBrokers.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await until('tail to follow', () => stderr.includes('following the edge-rule topic'), 30_000);
      expect(stdout).toBe(''); // the bootstrap is quiet without --from-beginning
      const r = rule('asn:64777', { asn: 64777 }, { action: 'block' });
      await publish([{ op: 'upsert', at: at + 4, rule: r }]);
      await publish([{ op: 'delete', at: at + 5, rule: r, why: 'expired' }]);
      await until('two lines', () => stdout.split('\n').length >= 3);
      const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual([
        { op: 'upsert', rule_id: r.rule_id, match: r.match, action: 'block', mode: 'enforce', created_at: r.created_at, expires_at: r.expires_at, at: at + 4, score: r.score, reason: r.reason, verdict_id: r.verdict_id },
        { op: 'delete', rule_id: r.rule_id, match: r.match, action: 'block', mode: 'enforce', created_at: r.created_at, expires_at: r.expires_at, at: at + 5, score: r.score, reason: r.reason, verdict_id: r.verdict_id },
      ]);
      child.kill('SIGTERM');
      expect(await exited, stderr.slice(-2000)).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
