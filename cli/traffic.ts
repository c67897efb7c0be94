import { ConfigError } from '../errors.js';
import type { ChallengeOutcome, RequestLog } from '../schemas/index.js';
import { Random } from '../random.js';

/**
 * Synthetic web traffic of one CDN customer (a shop on `www.shop.example`), with labelled
 * bot bursts. Pure and deterministic: no I/O, no clock; the same options give the same
 * events in the same order.
 *
 * The world (ASNs, countries, IP pools, fingerprints, site map) is fixed, built from a
 * constant seed, so an attack's ASN and JA4 are the same for every run; `seed` drives the
 * traffic itself. Benign traffic, the flash crowd and each attack draw from their own random
 * streams, so switching a scenario on or off leaves the other sources' records unchanged
 * (except `request_id`, which counts every event).
 */

// ---------------------------------------------------------------------------------------
// Public types

/** Stable scenario names (they label events and name bursts in label files). */
export type ScenarioName = 'credential_stuffing' | 'scraper' | 'l7_flood' | 'flash_crowd' | 'push_notification' | 'new_client';

/**
 * What a scenario is: an attack (labelled with its name), a benign surge that ends (labelled
 * null), or benign drift, new traffic that starts and then stays until the end of the run
 * (labelled null; a detector should flag it at first, then adapt).
 */
export type ScenarioKind = 'attack' | 'benign_surge' | 'benign_drift';

/** Options of {@link generateTraffic}. */
export interface TrafficOptions {
  /** Seed of the traffic's random streams (integer; only its low 32 bits count). */
  seed: number;
  /** Event time of the first request, epoch ms. */
  startMs: number;
  /** Length of the run in event time, ms. */
  durationMs: number;
  /** Benign requests per second, on average (the command's default is 300). Attack rates scale with it. */
  baseRps: number;
  /** Scenarios to inject. Use {@link DEFAULT_SCENARIOS} for the three attacks. */
  scenarios: ScenarioName[];
  /** Largest out-of-orderness of event time in arrival order, ms. Default 2000. */
  jitterMs?: number;
}

/** One generated request and its label: the scenario name for attack requests, null for benign ones. */
export interface LabelledEvent {
  log: RequestLog;
  label: string | null;
}

/** Ground truth of one scenario in one run. */
export interface LabelledBurst {
  name: ScenarioName;
  kind: ScenarioKind;
  /** Event time of the first possible request of the burst, epoch ms (inclusive). */
  startMs: number;
  /** Event time at which the burst stops, epoch ms (exclusive); the end of the run for drift. */
  endMs: number;
  /** The entity that sends the burst (attacker, or the one network of a single-network surge); empty for a surge spread over all entities. */
  match: { asn?: number; ja4?: string };
  description: string;
}

/** What a scenario is, independent of any run. */
export interface ScenarioSpec {
  kind: ScenarioKind;
  /** The sending ASN (attacker, push notification, new client); absent for surges spread over all networks. */
  asn?: number;
  /** The sending JA4 fingerprint (attacker, new client); absent for surges of many clients. */
  ja4?: string;
  /**
   * Requests per second during the burst, as a multiple of `baseRps` (flash crowd: extra traffic
   * at the peak; push notification: the multiple of the network's own human traffic at the peak).
   */
  rateFactor: number;
  /** Length of the burst when the run is long enough, ms (drift: Infinity, it lasts to the end of the run). */
  durationMs: number;
  /** Where the burst sits in the attack region: 0 at its start, 1 at its end (drift: where it starts). */
  offset: number;
  /** Distinct client IPs the attack or new client rotates through (0 for surges of existing clients). */
  clientIps: number;
  description: string;
}

// ---------------------------------------------------------------------------------------
// Fingerprints and user agents

/** Client families: one TLS stack each, hence one JA4 each (plus a QUIC one for some browsers). */
const enum Fam {
  Chrome,
  ChromeNew,
  Safari,
  Firefox,
  AndroidApp,
  OkHttp,
  Curl,
  Python,
  Go,
  Headless,
  Googlebot,
}

/** Which part of the site map a family requests. */
const enum Profile {
  Browser,
  App,
  Tool,
  Crawler,
  Launch,
}
const PROFILE_COUNT = 5;

const CHROME_UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.80',
  'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36',
];

interface Family {
  name: string;
  ja4: string;
  /** Fingerprint of the same client over QUIC (HTTP/3), if it speaks HTTP/3. */
  quicJa4: string | null;
  userAgents: string[];
  /** Weights of HTTP/1.1, HTTP/2, HTTP/3. */
  protocols: [number, number, number];
  profile: Profile;
  /** Weights of challenge outcomes NONE, ISSUED, PASSED, FAILED. */
  challenges: [number, number, number, number];
  /** Human-driven client (browser or app): takes part in the flash crowd. */
  browser: boolean;
}

const QUIC_CHROME = 'q13d0312h3_55b375c5d22e_06cda9e17597';
const QUIC_SAFARI = 'q13d0310h3_55b375c5d22e_cd85d2d88918';
const HUMAN_CHALLENGES: [number, number, number, number] = [0.994, 0.0025, 0.003, 0.0005];
const TOOL_CHALLENGES: [number, number, number, number] = [0.975, 0.01, 0.002, 0.013];

/** Indexed by {@link Fam}. JA4 strings follow the FoxIO format (`t13d1516h2_…`). */
const FAMILIES: Family[] = [
  {
    name: 'chrome',
    ja4: 't13d1516h2_8daaf6152771_02713d6af862',
    quicJa4: QUIC_CHROME,
    userAgents: CHROME_UAS,
    protocols: [0.05, 0.7, 0.25],
    profile: Profile.Browser,
    challenges: HUMAN_CHALLENGES,
    browser: true,
  },
  {
    name: 'chrome_124',
    ja4: 't13d1517h2_8daaf6152771_b0da82dd1658',
    quicJa4: QUIC_CHROME,
    userAgents: CHROME_UAS.map((ua) => ua.replaceAll('122.0.', '124.0.').replace('2365.80', '2478.67')),
    protocols: [0.05, 0.7, 0.25],
    profile: Profile.Browser,
    challenges: HUMAN_CHALLENGES,
    browser: true,
  },
  {
    name: 'safari',
    ja4: 't13d2014h2_a09f3c656075_14788d8d241b',
    quicJa4: QUIC_SAFARI,
    userAgents: [
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Mobile/15E148 Safari/604.1',
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Safari/605.1.15',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1',
      'Mozilla/5.0 (iPad; CPU OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1',
      'ShopApp/5.14.2 CFNetwork/1490.0.4 Darwin/23.2.0',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1',
    ],
    protocols: [0.04, 0.76, 0.2],
    profile: Profile.Browser,
    challenges: HUMAN_CHALLENGES,
    browser: true,
  },
  {
    name: 'firefox',
    ja4: 't13d1715h2_5b57614c22b0_3d5424432f57',
    quicJa4: null,
    userAgents: [
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0',
      'Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0',
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:123.0) Gecko/20100101 Firefox/123.0',
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0',
    ],
    protocols: [0.08, 0.92, 0],
    profile: Profile.Browser,
    challenges: HUMAN_CHALLENGES,
    browser: true,
  },
  {
    name: 'android_app',
    ja4: 't13d1516h2_8daaf6152771_9b887d9acb53',
    quicJa4: QUIC_CHROME,
    userAgents: [
      'ShopApp/5.14.2 (Linux; U; Android 14; Pixel 8 Build/UD1A.230803.041) Cronet/121.0.6167.178',
      'ShopApp/5.14.2 (Linux; U; Android 13; SM-S918B Build/TP1A.220624.014) Cronet/121.0.6167.178',
      'ShopApp/5.13.0 (Linux; U; Android 12; M2101K6G Build/SKQ1.210908.001) Cronet/119.0.6045.163',
    ],
    protocols: [0.02, 0.68, 0.3],
    profile: Profile.App,
    challenges: HUMAN_CHALLENGES,
    browser: true,
  },
  {
    name: 'okhttp',
    ja4: 't13d1812h2_e8a523a41297_ef7df7f74e48',
    quicJa4: null,
    userAgents: ['okhttp/4.12.0', 'ShopApp/5.9.0 (Android 11; SM-A515F) okhttp/4.9.3', 'okhttp/4.9.3', 'okhttp/3.14.9'],
    protocols: [0.15, 0.85, 0],
    profile: Profile.App,
    challenges: HUMAN_CHALLENGES,
    browser: false,
  },
  {
    name: 'curl',
    ja4: 't13d3112h2_e8f1e7e78f70_6bebaf5329ec',
    quicJa4: null,
    userAgents: ['curl/8.5.0', 'curl/7.81.0', 'curl/8.4.0', 'curl/7.88.1'],
    protocols: [0.4, 0.6, 0],
    profile: Profile.Tool,
    challenges: TOOL_CHALLENGES,
    browser: false,
  },
  {
    name: 'python_requests',
    ja4: 't13d5911h1_a33745022dd6_1f22a2ca17c4',
    quicJa4: null,
    userAgents: ['python-requests/2.31.0', 'python-requests/2.32.3', 'python-requests/2.28.2'],
    protocols: [1, 0, 0],
    profile: Profile.Tool,
    challenges: TOOL_CHALLENGES,
    browser: false,
  },
  {
    name: 'go_http',
    ja4: 't13d1312h2_f57a46bbacb6_e7c285222651',
    quicJa4: null,
    userAgents: ['Go-http-client/2.0', 'Go-http-client/1.1', 'uptime-checker/1.4 Go-http-client/2.0'],
    protocols: [0.4, 0.6, 0],
    profile: Profile.Tool,
    challenges: TOOL_CHALLENGES,
    browser: false,
  },
  {
    name: 'headless_chrome',
    ja4: 't13d1516h2_8daaf6152771_e5627efa2ab1',
    quicJa4: null,
    userAgents: [
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/122.0.6261.94 Safari/537.36',
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/121.0.6167.85 Safari/537.36',
    ],
    protocols: [0.1, 0.9, 0],
    profile: Profile.Browser,
    challenges: TOOL_CHALLENGES,
    browser: false,
  },
  {
    name: 'googlebot',
    ja4: 't13d1613h2_9dc949149365_97f8aa674fd9',
    quicJa4: null,
    userAgents: [
      'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
      'Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.94 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
    ],
    protocols: [0.45, 0.55, 0],
    profile: Profile.Crawler,
    challenges: [1, 0, 0, 0],
    browser: false,
  },
];

/** JA4 of each client family of the simulated world, by family name. */
export const FINGERPRINTS: Readonly<Record<string, string>> = Object.fromEntries(FAMILIES.map((f) => [f.name, f.ja4]));

// ---------------------------------------------------------------------------------------
// Scenarios

/** ASN of the push-notification surge: T-Mobile US, the busiest mobile network of the simulated world (~5% of benign requests). */
const PUSH_ASN = 21928;
/** ASN of the new partner integration: Microsoft (Azure). */
const NEW_CLIENT_ASN = 8075;
/** JA4 of the new partner integration: a Go client with its own cipher list, seen nowhere else in the world. */
const NEW_CLIENT_JA4 = 't13d1311h2_f57a46bbacb6_a28c3d5f64b1';

/** Every scenario, what it does and who sends it. Times are placed by {@link scenarioLabels}. */
export const SCENARIOS: Readonly<Record<ScenarioName, ScenarioSpec>> = {
  credential_stuffing: {
    kind: 'attack',
    asn: 212238,
    ja4: FAMILIES[Fam.Python]!.ja4,
    rateFactor: 0.05,
    durationMs: 120_000,
    offset: 0,
    clientIps: 400,
    description:
      'Credential stuffing: python-requests TLS stack (5 in 8 clients spoof a Chrome user agent) from 400 IPs of ' +
      'hosting ASN 212238 (Datacamp, GB), POST /login at 5% of baseRps for 2 min; ~86% 401, ~11% 403, ~3% 200.',
  },
  scraper: {
    kind: 'attack',
    asn: 16509,
    ja4: FAMILIES[Fam.Headless]!.ja4,
    rateFactor: 0.025,
    durationMs: 150_000,
    offset: 0.5,
    clientIps: 24,
    description:
      'Catalogue scraper: headless Chrome (a third claim to be plain Chrome) from 24 IPs of cloud ASN 16509 (Amazon), a sweep of unique ' +
      'GET /product/<id> pages in id order at 2.5% of baseRps for 2.5 min, no assets, small responses.',
  },
  l7_flood: {
    kind: 'attack',
    asn: 14061,
    ja4: FAMILIES[Fam.Curl]!.ja4,
    rateFactor: 0.5,
    durationMs: 90_000,
    offset: 1,
    clientIps: 300,
    description:
      'Layer-7 flood: curl TLS stack from 300 IPs of hosting ASN 14061 (DigitalOcean), GET / (some cache-busting) ' +
      'and /api/search at 50% of baseRps for 1.5 min; the origin starts answering 5xx.',
  },
  flash_crowd: {
    kind: 'benign_surge',
    rateFactor: 3,
    durationMs: 120_000,
    offset: 0.25,
    clientIps: 0,
    description:
      'Flash crowd (benign): a product launch multiplies human browser traffic by up to 4x for 2 min (20 s ramps), ' +
      'spread over every eyeball ASN and browser JA4 in proportion; requests are labelled null.',
  },
  push_notification: {
    kind: 'benign_surge',
    asn: PUSH_ASN,
    rateFactor: 5,
    durationMs: 90_000,
    offset: 0.75,
    clientIps: 0,
    description:
      'Push notification (benign): the shop app notifies its users, and the human traffic of one mobile network (ASN 21928, ' +
      'T-Mobile US) rises to ~5x for 1.5 min (10 s ramps), with its usual browser and app fingerprints, paths and statuses; labelled null.',
  },
  new_client: {
    kind: 'benign_drift',
    asn: NEW_CLIENT_ASN,
    ja4: NEW_CLIENT_JA4,
    rateFactor: 0.03,
    durationMs: Infinity,
    offset: 0,
    clientIps: 8,
    description:
      'New partner integration (benign drift): a Go service on 8 IPs of cloud ASN 8075 (Microsoft) with a TLS fingerprint not seen ' +
      'before starts polling the partner API at 3% of baseRps (GET inventory and catalogue pages, POST orders, all 2xx) and keeps ' +
      'going, steady, to the end of the run; labelled null.',
  },
};

/** The scenarios injected when none are named: the three attacks. */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = ['credential_stuffing', 'scraper', 'l7_flood'];
/** Every scenario name. */
export const SCENARIO_NAMES: readonly ScenarioName[] = ['credential_stuffing', 'scraper', 'l7_flood', 'flash_crowd', 'push_notification', 'new_client'];

/** History the detector needs before it can flag, ms; attacks start no earlier than this after the start. */
export const WARM_UP_MS = 6 * 60_000;
/** Shortest run that keeps attacks after {@link WARM_UP_MS}; shorter runs place them after two thirds of the run. */
export const MIN_WARM_DURATION_MS = 9 * 60_000;

/**
 * Where each scenario sits in a run. Runs of at least 9 min put every burst inside
 * [start + 6 min, end − 1 min], so the detector has history before and closed windows after.
 * Shorter runs (tests, smoke runs) use [start + 2/3·duration, start + 11/12·duration]; the
 * detector is not warmed up there. A burst is shortened to fit its region, and `offset`
 * spreads bursts across it (they may overlap: they never share an entity). Drift starts at
 * `offset` of the region and lasts to the end of the run.
 */
export function scenarioLabels(opts: TrafficOptions): LabelledBurst[] {
  const d = opts.durationMs;
  const [regionStart, regionEnd] = d >= MIN_WARM_DURATION_MS ? [WARM_UP_MS, d - 60_000] : [(2 * d) / 3, (11 * d) / 12];
  const regionLen = regionEnd - regionStart;
  const out: LabelledBurst[] = [];
  for (const name of opts.scenarios) {
    const spec = SCENARIOS[name];
    const drift = spec.kind === 'benign_drift';
    const len = drift ? 0 : Math.min(spec.durationMs, regionLen);
    let rel = regionStart + spec.offset * (regionLen - len);
    // Whole seconds keep labels readable; short runs keep millisecond precision.
    if (drift ? regionLen >= 10_000 : len >= 10_000) rel = Math.ceil(rel / 1000) * 1000;
    const startMs = Math.round(opts.startMs + rel);
    const endMs = drift ? opts.startMs + d : Math.min(startMs + Math.round(len), opts.startMs + d);
    const match: LabelledBurst['match'] = {};
    if (spec.asn !== undefined) match.asn = spec.asn;
    if (spec.ja4 !== undefined) match.ja4 = spec.ja4;
    out.push({ name, kind: spec.kind, startMs, endMs, match, description: spec.description });
  }
  return out;
}

/**
 * Whether the traffic of a verdict's entity contains a burst sent by `match`: the asn×ja4 pair
 * itself (entity `<asn>|<ja4>`), its whole ASN, or its whole fingerprint. A match that names
 * only an ASN is contained in that ASN alone; an empty match (a surge spread over everyone) in none.
 */
export function burstContains(entityType: string, entity: string, match: { asn?: number; ja4?: string }): boolean {
  if (entityType === 'asn') return match.asn !== undefined && Number(entity) === match.asn;
  if (entityType === 'ja4') return match.ja4 !== undefined && entity === match.ja4;
  return match.asn !== undefined && match.ja4 !== undefined && entity === `${match.asn}|${match.ja4}`;
}

// ---------------------------------------------------------------------------------------
// Random numbers

/** Walker/Vose alias table: O(1) draws from a fixed discrete distribution with one uniform. */
class Alias {
  private readonly prob: Float64Array;
  private readonly alias: Int32Array;
  readonly n: number;

  constructor(weights: ArrayLike<number>) {
    const n = weights.length;
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[i]!;
    if (n === 0 || !(total > 0)) throw new Error('alias table needs a positive total weight');
    this.n = n;
    this.prob = new Float64Array(n);
    this.alias = new Int32Array(n);
    const scaled = new Float64Array(n);
    const small: number[] = [];
    const large: number[] = [];
    for (let i = 0; i < n; i++) {
      scaled[i] = (weights[i]! * n) / total;
      (scaled[i]! < 1 ? small : large).push(i);
    }
    while (small.length > 0 && large.length > 0) {
      const s = small.pop()!;
      const l = large.pop()!;
      this.prob[s] = scaled[s]!;
      this.alias[s] = l;
      scaled[l] = scaled[l]! + scaled[s]! - 1;
      (scaled[l]! < 1 ? small : large).push(l);
    }
    for (const i of large) this.prob[i] = 1;
    for (const i of small) this.prob[i] = 1;
  }

  sample(r: Random): number {
    const x = r.next() * this.n;
    const i = Math.floor(x);
    return x - i < this.prob[i]! ? i : this.alias[i]!;
  }
}

/** Zipf weights 1/(k+1)^s for k = 0..n-1. */
function zipf(n: number, s: number): number[] {
  const w: number[] = [];
  for (let k = 0; k < n; k++) w.push(1 / Math.pow(k + 1, s));
  return w;
}

function shuffle<T>(r: Random, a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

// ---------------------------------------------------------------------------------------
// The world: ASNs, IP pools, site map

type AsnKind = 'residential' | 'mobile' | 'cloud' | 'hosting' | 'vpn' | 'crawler';
type Region = 'arin' | 'ripe' | 'apnic' | 'lacnic' | 'afrinic';

/** Named eyeball networks, largest first (their traffic share is Zipf by this order). */
const ISPS: [number, string, AsnKind][] = [
  [7922, 'US', 'residential'], // Comcast
  [7018, 'US', 'residential'], // AT&T
  [21928, 'US', 'mobile'], // T-Mobile US
  [20115, 'US', 'residential'], // Charter
  [6167, 'US', 'mobile'], // Verizon Wireless
  [3320, 'DE', 'residential'], // Deutsche Telekom
  [701, 'US', 'residential'], // Verizon
  [2856, 'GB', 'residential'], // BT
  [22773, 'US', 'residential'], // Cox
  [3215, 'FR', 'residential'], // Orange
  [5089, 'GB', 'residential'], // Virgin Media
  [20057, 'US', 'mobile'], // AT&T Mobility
  [3209, 'DE', 'residential'], // Vodafone DE
  [12322, 'FR', 'residential'], // Free
  [812, 'CA', 'residential'], // Rogers
  [11427, 'US', 'residential'], // Charter TX
  [577, 'CA', 'residential'], // Bell Canada
  [55836, 'IN', 'mobile'], // Reliance Jio
  [28573, 'BR', 'residential'], // Claro BR
  [209, 'US', 'residential'], // Lumen
  [5607, 'GB', 'residential'], // Sky
  [1221, 'AU', 'residential'], // Telstra
  [2516, 'JP', 'residential'], // KDDI
  [3352, 'ES', 'residential'], // Telefonica ES
  [4766, 'KR', 'residential'], // Korea Telecom
  [3269, 'IT', 'residential'], // TIM
  [1136, 'NL', 'residential'], // KPN
  [33915, 'NL', 'residential'], // Ziggo
  [5650, 'US', 'residential'], // Frontier
  [10796, 'US', 'residential'], // Spectrum
  [6805, 'DE', 'residential'], // Telefonica DE
  [15557, 'FR', 'residential'], // SFR
  [5410, 'FR', 'residential'], // Bouygues
  [852, 'CA', 'residential'], // Telus
  [8151, 'MX', 'residential'], // Telmex
  [26599, 'BR', 'mobile'], // Vivo
  [45609, 'IN', 'mobile'], // Airtel
  [4713, 'JP', 'residential'], // NTT OCN
  [17676, 'JP', 'residential'], // SoftBank
  [9318, 'KR', 'residential'], // SK Broadband
  [4804, 'AU', 'residential'], // Optus
  [25135, 'GB', 'mobile'], // Vodafone UK
  [13285, 'GB', 'residential'], // TalkTalk
  [3301, 'SE', 'residential'], // Telia
  [2119, 'NO', 'residential'], // Telenor
  [5432, 'BE', 'residential'], // Proximus
  [3303, 'CH', 'residential'], // Swisscom
  [8447, 'AT', 'residential'], // A1
  [5466, 'IE', 'residential'], // Eir
  [5617, 'PL', 'residential'], // Orange PL
  [12389, 'RU', 'residential'], // Rostelecom
  [9121, 'TR', 'residential'], // Turk Telekom
  [7713, 'ID', 'mobile'], // Telkom Indonesia
  [45899, 'VN', 'residential'], // VNPT
  [9299, 'PH', 'residential'], // PLDT
  [4788, 'MY', 'residential'], // TM Net
  [7303, 'AR', 'residential'], // Telecom Argentina
  [10620, 'CO', 'residential'], // Claro CO
  [4134, 'CN', 'residential'], // China Telecom
  [4837, 'CN', 'residential'], // China Unicom
  [37457, 'ZA', 'residential'], // Telkom SA
  [36935, 'EG', 'mobile'], // Vodafone EG
  [12430, 'ES', 'mobile'], // Vodafone ES
  [1759, 'FI', 'residential'], // Telia FI
  [3292, 'DK', 'residential'], // TDC
  [6830, 'AT', 'residential'], // Liberty Global
  [3462, 'TW', 'residential'], // HiNet
  [4760, 'HK', 'residential'], // HKT
  [9506, 'SG', 'residential'], // Singtel
  [4771, 'NZ', 'residential'], // Spark NZ
  [7552, 'VN', 'mobile'], // Viettel
  [17552, 'TH', 'residential'], // True Internet
  [6147, 'PE', 'residential'], // Telefonica PE
  [27651, 'CL', 'residential'], // Entel CL
  [266608, 'BR', 'residential'], // regional BR ISP (4-byte)
  [263327, 'BR', 'residential'], // regional BR ISP (4-byte)
  [133661, 'IN', 'residential'], // regional IN ISP (4-byte)
];

/** Clouds, hosters, VPN exits and the verified crawler, with fixed shares of benign requests. */
const FIXED_SHARE: [number, string, AsnKind, number, string[]][] = [
  [15169, 'US', 'crawler', 0.008, ['66.249']], // Google (Googlebot)
  [16509, 'US', 'cloud', 0.008, ['52.95', '54.201', '3.231', '18.204']], // Amazon
  [14618, 'US', 'cloud', 0.004, ['34.228', '44.192']], // Amazon us-east-1
  [8075, 'US', 'cloud', 0.005, ['20.51', '40.77', '52.160']], // Microsoft
  [396982, 'US', 'cloud', 0.004, ['35.204', '34.118']], // Google Cloud
  [14061, 'US', 'hosting', 0.003, ['159.203', '167.99', '138.68', '64.227']], // DigitalOcean
  [24940, 'DE', 'hosting', 0.003, ['5.161', '95.216', '116.202', '88.198']], // Hetzner
  [16276, 'FR', 'hosting', 0.003, ['51.75', '145.239', '54.37']], // OVH
  [63949, 'US', 'hosting', 0.002, ['172.104', '45.79']], // Akamai Linode
  [20473, 'US', 'hosting', 0.002, ['45.76', '149.28']], // Vultr
  [212238, 'GB', 'hosting', 0.0025, ['138.199', '185.246', '212.102']], // Datacamp
  [60068, 'GB', 'hosting', 0.001, ['89.187', '156.146']], // CDN77
  [51167, 'DE', 'hosting', 0.0015, ['161.97', '173.212']], // Contabo
  [396356, 'US', 'hosting', 0.001, ['103.214', '189.1']], // Latitude.sh
  [136907, 'HK', 'cloud', 0.001, ['159.138', '119.8']], // Huawei Cloud
  [45102, 'SG', 'cloud', 0.001, ['47.88', '8.219']], // Alibaba Cloud
  [132203, 'CN', 'cloud', 0.001, ['43.131', '129.226']], // Tencent Cloud
  [9009, 'GB', 'vpn', 0.002, ['146.70', '185.156']], // M247 (VPN exits)
  [13335, 'US', 'vpn', 0.004, ['104.28']], // Cloudflare WARP
];

/** Family mix (weights indexed by {@link Fam}) per kind of network. */
const FAMILY_MIX: Record<AsnKind, number[]> = {
  //          chrome 124   safari ff    andr  okhttp curl  python go    headless gbot
  residential: [0.4, 0.14, 0.25, 0.07, 0.06, 0.04, 0.012, 0.008, 0.006, 0.004, 0],
  mobile: [0.28, 0.1, 0.36, 0.01, 0.14, 0.09, 0.002, 0.002, 0.004, 0.002, 0],
  cloud: [0.12, 0.05, 0.03, 0.03, 0, 0.05, 0.12, 0.2, 0.2, 0.12, 0],
  hosting: [0.18, 0.06, 0.03, 0.05, 0, 0.04, 0.14, 0.18, 0.14, 0.1, 0],
  vpn: [0.4, 0.14, 0.2, 0.12, 0.05, 0.03, 0.02, 0.02, 0.01, 0.01, 0],
  crawler: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
};

/** Share of IPv6 among a network's client addresses. */
const IPV6_SHARE: Record<AsnKind, number> = {
  residential: 0.25,
  mobile: 0.45,
  cloud: 0.04,
  hosting: 0.04,
  vpn: 0.1,
  crawler: 0.3,
};

const REGION_OF: Record<string, Region> = {};
for (const c of ['US', 'CA']) REGION_OF[c] = 'arin';
for (const c of ['BR', 'MX', 'AR', 'CO', 'PE', 'CL']) REGION_OF[c] = 'lacnic';
for (const c of ['ZA', 'EG', 'NG', 'KE']) REGION_OF[c] = 'afrinic';
for (const c of ['IN', 'JP', 'KR', 'AU', 'ID', 'VN', 'PH', 'MY', 'CN', 'TW', 'HK', 'SG', 'NZ', 'TH']) REGION_OF[c] = 'apnic';

const V4_FIRST_OCTETS: Record<Region, number[]> = {
  arin: [23, 24, 50, 63, 64, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 96, 97, 98, 99, 107, 108, 173, 174, 184, 199, 208],
  ripe: [2, 5, 31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 109, 176, 178, 188, 212, 213, 217],
  apnic: [1, 14, 27, 36, 39, 42, 49, 58, 59, 60, 61, 101, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 121, 122, 123, 124, 125, 180, 182, 183, 202, 203, 210, 211, 218, 219, 220, 221],
  lacnic: [177, 179, 181, 186, 187, 189, 190, 191, 200, 201],
  afrinic: [41, 102, 105, 154, 196, 197],
};
const V6_PREFIXES: Record<Region, string[]> = {
  arin: ['2600', '2601', '2602', '2603', '2604', '2605', '2607', '2620'],
  ripe: ['2a00', '2a01', '2a02', '2a0a', '2003', '2a04'],
  apnic: ['2400', '2401', '2402', '2404', '2406', '2408', '240e'],
  lacnic: ['2800', '2801', '2804'],
  afrinic: ['2c0f', '2c0e'],
};
/** 4-byte ASN blocks per registry, as they are really allocated. */
const FOUR_BYTE_BLOCKS: Record<Region, [number, number]> = {
  arin: [393216, 401999],
  ripe: [196608, 213999],
  apnic: [131072, 141999],
  lacnic: [262144, 273999],
  afrinic: [327680, 329999],
};
const TAIL_COUNTRIES: [string, number][] = [
  ['US', 20], ['DE', 7], ['GB', 6], ['FR', 5], ['BR', 6], ['IN', 6], ['JP', 4], ['IT', 4], ['ES', 4], ['CA', 3],
  ['NL', 3], ['PL', 3], ['MX', 3], ['AU', 3], ['KR', 2], ['ID', 2], ['TR', 2], ['SE', 1.5], ['CH', 1.5], ['AR', 1.5],
  ['CO', 1.5], ['ZA', 1.5], ['NG', 1], ['KE', 1], ['PH', 1.5], ['VN', 1.5], ['TH', 1.5], ['RO', 1], ['CZ', 1], ['PT', 1],
  ['GR', 1], ['UA', 1], ['IL', 1], ['SA', 1], ['AE', 1], ['EG', 1], ['CL', 1], ['PE', 1], ['NZ', 1], ['IE', 1],
  ['BE', 1], ['AT', 1], ['DK', 1], ['NO', 1], ['FI', 1], ['MY', 1], ['SG', 1], ['HK', 1], ['TW', 1],
];
const TAIL_ISPS = 140;
/** Total client addresses over all networks (pools are proportional to traffic share). */
const TOTAL_POOL = 60_000;

/** Kinds of path, which decide method, status and size. */
const enum Kind {
  Static,
  Page,
  Product,
  Login,
  ApiGet,
  ApiPost,
  ApiMixed,
  Misc,
  Scan,
}

interface PathEntry {
  path: string;
  host: string;
  kind: Kind;
  /** Fixed size of a static asset, or the median size of a dynamic response, bytes. */
  bytes: number;
}

const HOST_WWW = 'www.shop.example';
const HOST_API = 'api.shop.example';
const HOST_APEX = 'shop.example';

interface Network {
  asn: number;
  country: string;
  kind: AsnKind;
  share: number;
  pool: string[];
  families: Alias;
  /** Family index for each slot of {@link families}. */
  familyIds: number[];
  /** Weight of each slot of {@link families}. */
  familyWeights: number[];
  browserFamilies: Alias | null;
  browserFamilyIds: number[];
  /** IPv4 /16 prefixes and the IPv6 /32 the network announces. */
  v4: string[];
  v6: string;
}

interface World {
  networks: Network[];
  byAsn: Map<number, Network>;
  benignAsns: Alias;
  eyeballAsns: Alias;
  eyeballIds: number[];
  paths: PathEntry[];
  profiles: Alias[];
  productIds: number[];
  searchTerms: string[];
  attackPools: Record<'credential_stuffing' | 'scraper' | 'l7_flood', string[]>;
}

const WORLD_SEED = 0x5eed_2024;

function hex16(r: Random): string {
  return r.int(0x10000).toString(16);
}

function makeV6(r: Random, prefix: string): string {
  // A /32 prefix (two groups), a /64 subnet (two groups), a privacy-extension interface id (four groups).
  return `${prefix}:${hex16(r)}:${(r.int(0x1000) << 4).toString(16)}:${hex16(r)}:${hex16(r)}:${hex16(r)}:${hex16(r)}`;
}

function makeV4(r: Random, prefix16: string): string {
  return `${prefix16}.${r.int(256)}.${1 + r.int(254)}`;
}

function regionOf(country: string): Region {
  return REGION_OF[country] ?? 'ripe';
}

function buildWorld(): World {
  const r = new Random(WORLD_SEED, 0);
  const used = new Set<number>([...ISPS.map((i) => i[0]), ...FIXED_SHARE.map((f) => f[0])]);

  // Eyeball networks: the named ones, then a tail of regional ISPs (many with 4-byte ASNs).
  const eyeball: [number, string, AsnKind][] = [...ISPS];
  const countryAlias = new Alias(TAIL_COUNTRIES.map((c) => c[1]));
  for (let i = 0; i < TAIL_ISPS; i++) {
    const country = i % 70 === 69 ? 'XX' : TAIL_COUNTRIES[countryAlias.sample(r)]![0];
    let asn: number;
    do {
      if (r.next() < 0.45) {
        const [lo, hi] = FOUR_BYTE_BLOCKS[regionOf(country)];
        asn = lo + r.int(hi - lo + 1);
      } else {
        asn = 1000 + r.int(63000);
      }
    } while (used.has(asn));
    used.add(asn);
    eyeball.push([asn, country, r.next() < 0.2 ? 'mobile' : 'residential']);
  }
  const fixedTotal = FIXED_SHARE.reduce((s, f) => s + f[3], 0);
  const zipfW = zipf(eyeball.length, 1.05);
  const zipfTotal = zipfW.reduce((a, b) => a + b, 0);

  const networks: Network[] = [];
  const addNetwork = (asn: number, country: string, kind: AsnKind, share: number, v4Fixed: string[] | null): void => {
    const region = regionOf(country === 'XX' ? 'DE' : country);
    const v4 =
      v4Fixed ??
      Array.from({ length: 1 + r.int(3) }, () => {
        const octets = V4_FIRST_OCTETS[region];
        return `${octets[r.int(octets.length)]!}.${r.int(256)}`;
      });
    const v6 = kind === 'crawler' ? '2001:4860' : `${V6_PREFIXES[region][r.int(V6_PREFIXES[region].length)]!}:${hex16(r)}`;
    const poolSize = Math.max(8, Math.min(6000, Math.round(share * TOTAL_POOL)));
    const pool: string[] = [];
    const v6Share = IPV6_SHARE[kind];
    for (let i = 0; i < poolSize; i++) {
      pool.push(r.next() < v6Share ? makeV6(r, v6) : makeV4(r, v4[r.int(v4.length)]!));
    }
    // Each network has its own lean within its kind's family mix (±30%).
    const mix = FAMILY_MIX[kind].map((w) => (kind === 'crawler' ? w : w * (0.7 + 0.6 * r.next())));
    const familyIds = mix.flatMap((w, i) => (w > 0 ? [i] : []));
    const browserFamilyIds = familyIds.filter((i) => FAMILIES[i]!.browser);
    networks.push({
      asn,
      country,
      kind,
      share,
      pool,
      families: new Alias(familyIds.map((i) => mix[i]!)),
      familyIds,
      familyWeights: familyIds.map((i) => mix[i]!),
      browserFamilies: browserFamilyIds.length > 0 ? new Alias(browserFamilyIds.map((i) => mix[i]!)) : null,
      browserFamilyIds,
      v4,
      v6,
    });
  };
  eyeball.forEach(([asn, country, kind], i) => addNetwork(asn, country, kind, ((1 - fixedTotal) * zipfW[i]!) / zipfTotal, null));
  for (const [asn, country, kind, share, v4] of FIXED_SHARE) addNetwork(asn, country, kind, share, v4);

  const byAsn = new Map(networks.map((n) => [n.asn, n]));
  const eyeballIds = networks.flatMap((n, i) => (n.browserFamilies && n.kind !== 'cloud' && n.kind !== 'hosting' ? [i] : []));

  // Site map. Product ids are sparse six-digit numbers, as in a real catalogue.
  const idSet = new Set<number>();
  while (idSet.size < 2000) idSet.add(100_000 + r.int(100_000));
  const productIds = shuffle(r, [...idSet]);
  const adjectives = ['red', 'black', 'waterproof', 'leather', 'kids', 'wool', 'summer', 'trail', 'mens', 'womens'];
  const nouns = ['shoes', 'jacket', 'boots', 'backpack', 'socks', 'hat', 'gloves', 'tent', 'bottle', 'sneakers', 'hoodie', 'scarf', 'sandals', 'jeans', 'dress'];
  const searchTerms = shuffle(r, adjectives.flatMap((a) => nouns.map((n) => `${a}+${n}`)));

  const paths: PathEntry[] = [];
  // Per profile: share of each path category, then Zipf inside it.
  const categories: { entries: PathEntry[]; s: number; share: number[] }[] = [];
  const cat = (entries: PathEntry[], s: number, share: number[]): void => {
    categories.push({ entries, s, share });
  };
  //                                                         browser app   tool  crawler launch
  cat(
    [
      ['/static/js/app.3f9a1c.js', 182_331],
      ['/static/js/vendor.8b21e4.js', 412_870],
      ['/static/css/main.71be0a.css', 48_212],
      ['/static/img/logo.png', 9_412],
      ['/static/js/runtime.a1d7e2.js', 3_180],
      ['/static/img/sprite.png', 61_904],
      ['/static/fonts/inter-var.woff2', 98_120],
      ['/favicon.ico', 15_086],
      ['/static/js/product.5e0c2b.js', 64_440],
      ['/static/css/product.0d3f8e.css', 12_905],
      ['/static/img/hero-spring.png', 286_311],
      ['/static/js/checkout.c94d10.js', 88_715],
      ...productIds.slice(0, 400).map((id, i): [string, number] => [`/static/img/p/${id}.png`, 30_000 + ((i * 7919) % 90_000)]),
    ].map(([path, bytes]) => ({ path: path as string, host: HOST_WWW, kind: Kind.Static, bytes: bytes as number })),
    0.9,
    [0.46, 0.1, 0.02, 0.03, 0.4],
  );
  const categoryNames = ['shoes', 'jackets', 'boots', 'bags', 'accessories', 'kids', 'sale', 'new-in', 'outdoor', 'running', 'women', 'men'];
  cat(
    [
      '/',
      ...categoryNames.map((c) => `/category/${c}`),
      '/cart',
      '/checkout',
      '/account',
      '/help',
      '/about',
      '/stores',
      ...Array.from({ length: 20 }, (_, i) => `/blog/${2023 + (i % 2)}/${['spring', 'trail', 'care', 'sizing', 'gift'][i % 5]}-guide-${i + 1}`),
    ].map((path) => ({ path, host: HOST_WWW, kind: Kind.Page, bytes: path === '/' ? 71_000 : 52_000 })),
    1.0,
    [0.12, 0, 0.25, 0.35, 0.12],
  );
  cat(
    productIds.map((id) => ({ path: `/product/${id}`, host: HOST_WWW, kind: Kind.Product, bytes: 48_000 })),
    1.0,
    [0.14, 0, 0.2, 0.45, 0.12],
  );
  cat([{ path: '/login', host: HOST_WWW, kind: Kind.Login, bytes: 14_300 }], 1, [0.02, 0.01, 0.02, 0, 0.01]);
  cat(
    [
      ...searchTerms.map((q) => ({ path: `/api/search?q=${q}`, host: HOST_API, kind: Kind.ApiGet, bytes: 6_200 })),
      { path: '/api/cart', host: HOST_API, kind: Kind.ApiMixed, bytes: 2_100 },
      { path: '/api/session', host: HOST_API, kind: Kind.ApiGet, bytes: 640 },
      { path: '/api/events', host: HOST_API, kind: Kind.ApiPost, bytes: 90 },
      { path: '/api/health', host: HOST_API, kind: Kind.ApiGet, bytes: 48 },
      ...productIds.slice(0, 100).map((id) => ({ path: `/api/recommendations?product=${id}`, host: HOST_API, kind: Kind.ApiGet, bytes: 3_800 })),
    ],
    0.8,
    [0.2, 0.85, 0.35, 0, 0.3],
  );
  cat(
    [
      ['/robots.txt', 820],
      ['/sitemap.xml', 96_000],
      ['/manifest.json', 1_210],
      ['/service-worker.js', 7_400],
      ['/.well-known/apple-app-site-association', 450],
    ].map(([path, bytes]) => ({ path: path as string, host: HOST_WWW, kind: Kind.Misc, bytes: bytes as number })),
    1.2,
    [0.04, 0.04, 0.1, 0.17, 0.02],
  );
  cat(
    ['/wp-login.php', '/.env', '/admin', '/xmlrpc.php', '/.git/config', '/phpmyadmin/'].map((path) => ({
      path,
      host: HOST_WWW,
      kind: Kind.Scan,
      bytes: 1_300,
    })),
    0.7,
    [0, 0, 0.03, 0, 0],
  );
  const profileWeights: number[][] = Array.from({ length: PROFILE_COUNT }, () => []);
  for (const c of categories) {
    const w = zipf(c.entries.length, c.s);
    const total = w.reduce((a, b) => a + b, 0);
    c.entries.forEach((e, i) => {
      paths.push(e);
      for (let p = 0; p < PROFILE_COUNT; p++) profileWeights[p]!.push((c.share[p]! * w[i]!) / total);
    });
  }
  // The launch product takes a fifth of the flash crowd's requests.
  const launchProductPath = `/product/${productIds[0]!}`;
  const launchIdx = paths.findIndex((p) => p.path === launchProductPath);
  profileWeights[Profile.Launch]![launchIdx]! += 0.2;

  // Attack pools: fresh addresses inside the attacking network's own prefixes.
  const attackPool = (asn: number, n: number): string[] => {
    const net = byAsn.get(asn)!;
    return Array.from({ length: n }, () => makeV4(r, net.v4[r.int(net.v4.length)]!));
  };
  return {
    networks,
    byAsn,
    benignAsns: new Alias(networks.map((n) => n.share)),
    eyeballAsns: new Alias(eyeballIds.map((i) => networks[i]!.share)),
    eyeballIds,
    paths,
    profiles: profileWeights.map((w) => new Alias(w)),
    productIds,
    searchTerms,
    attackPools: {
      credential_stuffing: attackPool(SCENARIOS.credential_stuffing.asn!, SCENARIOS.credential_stuffing.clientIps),
      scraper: attackPool(SCENARIOS.scraper.asn!, SCENARIOS.scraper.clientIps),
      l7_flood: attackPool(SCENARIOS.l7_flood.asn!, SCENARIOS.l7_flood.clientIps),
    },
  };
}

/**
 * Addresses of the new partner integration: fresh ones inside its network's prefixes, from a
 * random stream of their own so that the world's other draws stay as they are.
 */
function newClientPool(net: Network, n: number): string[] {
  const r = new Random(WORLD_SEED, 1);
  return Array.from({ length: n }, () => makeV4(r, net.v4[r.int(net.v4.length)]!));
}

let worldCache: World | undefined;
function world(): World {
  worldCache ??= buildWorld();
  return worldCache;
}

/**
 * Expected benign requests per second of one asn×ja4 pair (TLS fingerprint only; plain-HTTP
 * and QUIC requests of the family are excluded), at the given base rate. For tests and reports.
 */
export function benignPairRate(asn: number, ja4: string, baseRps = 300): number {
  const w = world();
  const net = w.byAsn.get(asn);
  if (!net) return 0;
  const fam = FAMILIES.findIndex((f) => f.ja4 === ja4);
  if (fam < 0) return 0;
  const slot = net.familyIds.indexOf(fam);
  if (slot < 0) return 0;
  const total = net.familyWeights.reduce((a, b) => a + b, 0);
  const f = FAMILIES[fam]!;
  const [h1, h2, h3] = f.protocols;
  const tls = (1 - PLAIN_HTTP_SHARE) * (f.quicJa4 ? (h1 + h2) / (h1 + h2 + h3) : 1);
  return (baseRps * net.share * net.familyWeights[slot]! * tls) / total;
}

// ---------------------------------------------------------------------------------------
// Generation

const PLAIN_HTTP_SHARE = 0.05;
const LATE_SHARE = 0.05;
const PROTOCOLS = ['HTTP/1.1', 'HTTP/2', 'HTTP/3'];
const CHALLENGES: ChallengeOutcome[] = ['NONE', 'ISSUED', 'PASSED', 'FAILED'];

/** Status codes and weights per kind of path (GET unless stated). */
const STATUS = {
  static: [[200, 0.58], [304, 0.408], [404, 0.01], [503, 0.002]],
  page: [[200, 0.925], [304, 0.04], [404, 0.015], [301, 0.015], [500, 0.002], [502, 0.001], [503, 0.002]],
  product: [[200, 0.94], [304, 0.025], [404, 0.03], [500, 0.003], [503, 0.002]],
  loginPost: [[200, 0.78], [401, 0.19], [403, 0.03]],
  apiGet: [[200, 0.975], [304, 0.01], [404, 0.005], [500, 0.004], [502, 0.002], [503, 0.004]],
  apiPost: [[200, 0.96], [201, 0.02], [400, 0.01], [500, 0.005], [503, 0.005]],
  misc: [[200, 0.9], [304, 0.05], [404, 0.05]],
  scan: [[404, 0.97], [403, 0.03]],
  credentialStuffing: [[401, 0.86], [403, 0.11], [200, 0.03]],
  scraper: [[200, 0.96], [404, 0.04]],
  flood: [[200, 0.78], [503, 0.14], [504, 0.05], [502, 0.03]],
} satisfies Record<string, [number, number][]>;

class StatusTable {
  private readonly alias: Alias;
  private readonly codes: number[];
  constructor(table: [number, number][]) {
    this.alias = new Alias(table.map((t) => t[1]));
    this.codes = table.map((t) => t[0]);
  }
  sample(r: Random): number {
    return this.codes[this.alias.sample(r)]!;
  }
}

function statusTables(): Record<keyof typeof STATUS, StatusTable> {
  return Object.fromEntries(Object.entries(STATUS).map(([k, v]) => [k, new StatusTable(v)])) as Record<keyof typeof STATUS, StatusTable>;
}

/** Response size of a header-only answer (3xx, HEAD), bytes. */
const HEADER_BYTES = 230;

/** A source of requests merged into the stream by event time. */
interface Source {
  /** Event time of its next candidate request (Infinity when exhausted). */
  next: number;
  /** The request at time `t` (null when thinning rejects the candidate); advances `next`. */
  emit(t: number): RequestLog | null;
  label: string | null;
  rng: Random;
}

/**
 * A source of candidates at `rate` req/s (Poisson) from the burst's start to its end; `make`
 * builds the request at a candidate's time, or null to thin it out. `label`: the scenario name
 * on attack requests, null on benign ones.
 */
function poissonSource(r: Random, b: LabelledBurst, rate: number, make: (t: number) => RequestLog | null, label: string | null = null): Source {
  return {
    next: b.startMs + (r.exp() / rate) * 1000,
    label,
    rng: r,
    emit(t) {
      this.next = t + (r.exp() / rate) * 1000;
      if (t >= b.endMs) {
        this.next = Infinity;
        return null;
      }
      return make(t);
    },
  };
}

/** A benign surge's source: {@link poissonSource} at `peak`, thinned by a linear ramp of `rampMs` up and down. */
function rampedSource(r: Random, b: LabelledBurst, peak: number, rampMs: number, make: (t: number) => RequestLog): Source {
  return poissonSource(r, b, peak, (t) => {
    const f = Math.min(1, (t - b.startMs) / rampMs, (b.endMs - t) / rampMs);
    if (r.next() >= f) return null;
    return make(t);
  });
}

function validate(opts: TrafficOptions): void {
  if (!Number.isSafeInteger(opts.seed)) throw new ConfigError('seed', `must be an integer, got ${opts.seed}`);
  if (!Number.isSafeInteger(opts.startMs) || opts.startMs <= 0) {
    throw new ConfigError('start_ms', `must be a positive epoch-ms integer, got ${opts.startMs}`);
  }
  if (!Number.isFinite(opts.durationMs) || opts.durationMs <= 0) {
    throw new ConfigError('duration_ms', `must be > 0, got ${opts.durationMs}`);
  }
  if (!Number.isFinite(opts.baseRps) || opts.baseRps < 0) throw new ConfigError('base_rps', `must be ≥ 0, got ${opts.baseRps}`);
  if (opts.jitterMs !== undefined && (!Number.isFinite(opts.jitterMs) || opts.jitterMs < 0)) {
    throw new ConfigError('jitter_ms', `must be ≥ 0, got ${opts.jitterMs}`);
  }
  for (const s of opts.scenarios) {
    if (!(SCENARIO_NAMES as readonly string[]).includes(s)) {
      throw new ConfigError('scenarios', `unknown scenario '${s}'; accepted: ${SCENARIO_NAMES.join(', ')}`);
    }
  }
}

/**
 * Generates the run's requests in arrival order. Event time increases along the stream except
 * for about 5% of requests, which arrive up to `jitterMs` late (as edge logs shipped in
 * batches do); the largest event time seen before any record exceeds its own by at most
 * `jitterMs`. Each request comes with its label (scenario name, or null when benign).
 *
 * Benign traffic is a Poisson process of rate `baseRps` × a gentle wave (±8%, periods 26 and
 * 9.5 min). Each request picks a network by traffic share, a client family by the network's
 * mix, a client IP from the network's pool (heavy-tailed: the busiest 1% of addresses send
 * about a tenth of its requests), a path by the family's Zipf-shaped site map, and a status and size by the path.
 */
export function* generateTraffic(opts: TrafficOptions): Generator<LabelledEvent> {
  validate(opts);
  const w = world();
  const st = statusTables();
  const seed = opts.seed | 0;
  const jitter = opts.jitterMs ?? 2000;
  const startMs = opts.startMs;
  const endMs = opts.startMs + opts.durationMs;
  const base = opts.baseRps;
  const idPrefix = `${seed < 0 ? 'n' + (-seed).toString(36) : seed.toString(36)}-`;
  let counter = 0;
  const bursts = scenarioLabels(opts);

  // Shared record fields of benign requests.
  const benignRecord = (r: Random, t: number, netIdx: number, famIdx: number, profile: Profile): RequestLog => {
    const net = w.networks[netIdx]!;
    const fam = FAMILIES[famIdx]!;
    const pool = net.pool;
    const u = r.next();
    // P(index < k) = sqrt(k / n): a heavy tail where the busiest 1% of addresses send ~10% of requests.
    const ipIdx = Math.floor(u * u * pool.length);
    const ua = fam.userAgents[(ipIdx + netIdx) % fam.userAgents.length]!;
    const plain = r.next() < PLAIN_HTTP_SHARE;
    let proto = 0;
    let ja4: string | null = null;
    if (!plain) {
      const p = fam.protocols;
      const x = r.next() * (p[0] + p[1] + p[2]);
      proto = x < p[0] ? 0 : x < p[0] + p[1] ? 1 : 2;
      ja4 = proto === 2 ? fam.quicJa4 : fam.ja4;
    }
    const e = w.paths[w.profiles[profile]!.sample(r)]!;
    let method = 'GET';
    let host = e.host;
    let status: number;
    let bytes: number;
    if (plain && r.next() < 0.92) {
      // Plain HTTP is mostly the redirect to HTTPS.
      status = 301;
      bytes = HEADER_BYTES - 60 + r.int(40);
    } else {
      switch (e.kind) {
        case Kind.Static:
          status = st.static.sample(r);
          bytes = status === 200 ? (r.next() < 0.6 ? Math.round(e.bytes * 0.78) : e.bytes) : status === 304 ? HEADER_BYTES : r.logNormal(1_300, 0.2);
          break;
        case Kind.Page:
        case Kind.Product:
          if (profile === Profile.Browser && r.next() < 0.015) {
            host = HOST_APEX;
            status = 301;
          } else {
            status = (e.kind === Kind.Page ? st.page : st.product).sample(r);
          }
          bytes = status === 200 ? r.logNormal(e.bytes, 0.35) : status >= 300 && status < 400 ? HEADER_BYTES : r.logNormal(3_100, 0.3);
          break;
        case Kind.Login:
          if (r.next() < 0.4) {
            method = 'POST';
            status = st.loginPost.sample(r);
            bytes = r.logNormal(status === 200 ? 1_900 : 420, 0.15);
          } else {
            status = 200;
            bytes = r.logNormal(e.bytes, 0.1);
          }
          break;
        case Kind.ApiGet:
        case Kind.ApiPost:
        case Kind.ApiMixed:
          if (e.kind === Kind.ApiPost || (e.kind === Kind.ApiMixed && r.next() < 0.5)) {
            method = 'POST';
            status = st.apiPost.sample(r);
          } else {
            status = st.apiGet.sample(r);
          }
          bytes = status < 300 ? r.logNormal(e.bytes, 0.6) : status === 304 ? HEADER_BYTES : r.logNormal(420, 0.3);
          break;
        case Kind.Misc:
          status = st.misc.sample(r);
          bytes = status === 200 ? e.bytes : status === 304 ? HEADER_BYTES : r.logNormal(1_300, 0.2);
          break;
        default:
          status = st.scan.sample(r);
          bytes = r.logNormal(1_300, 0.2);
      }
      if (profile === Profile.Tool && method === 'GET' && r.next() < 0.02) {
        method = 'HEAD';
        bytes = HEADER_BYTES;
      }
    }
    const c = fam.challenges;
    const y = r.next();
    const challenge = CHALLENGES[y < c[0] ? 0 : y < c[0] + c[1] ? 1 : y < c[0] + c[1] + c[2] ? 2 : 3]!;
    return {
      timestamp: Math.floor(t),
      request_id: idPrefix + (counter++).toString(36),
      client_ip: pool[ipIdx]!,
      asn: net.asn,
      country: net.country,
      ja4,
      user_agent: ua,
      method,
      host,
      path: e.path,
      status,
      response_bytes: bytes,
      protocol: PROTOCOLS[proto]!,
      challenge,
    };
  };

  const sources: Source[] = [];

  // Benign: thinning against the wave's peak rate.
  if (base > 0) {
    const r = new Random(seed, 1);
    const phase1 = 2 * Math.PI * r.next();
    const phase2 = 2 * Math.PI * r.next();
    const peak = base * 1.08;
    const k1 = (2 * Math.PI) / (26 * 60_000);
    const k2 = (2 * Math.PI) / (9.5 * 60_000);
    sources.push({
      next: startMs + (r.exp() / peak) * 1000,
      label: null,
      rng: r,
      emit(t) {
        this.next = t + (r.exp() / peak) * 1000;
        const tau = t - startMs;
        const rate = base * (1 + 0.05 * Math.sin(k1 * tau + phase1) + 0.03 * Math.sin(k2 * tau + phase2));
        if (r.next() * peak >= rate) return null;
        const a = w.benignAsns.sample(r);
        const net = w.networks[a]!;
        const f = net.familyIds[net.families.sample(r)]!;
        return benignRecord(r, t, a, f, FAMILIES[f]!.profile);
      },
    });
  }

  for (const b of bursts) {
    const spec = SCENARIOS[b.name];
    const r = new Random(seed, 10 + SCENARIO_NAMES.indexOf(b.name));
    const len = b.endMs - b.startMs;
    if (b.name === 'flash_crowd') {
      if (base <= 0 || len <= 0) continue;
      const peak = base * spec.rateFactor;
      const ramp = Math.min(20_000, len / 4);
      sources.push(
        rampedSource(r, b, peak, ramp, (t) => {
          const a = w.eyeballIds[w.eyeballAsns.sample(r)]!;
          const net = w.networks[a]!;
          const fam = net.browserFamilyIds[net.browserFamilies!.sample(r)]!;
          return benignRecord(r, t, a, fam, Profile.Launch);
        }),
      );
      continue;
    }
    if (b.name === 'push_notification') {
      if (base <= 0 || len <= 0) continue;
      const a = w.networks.findIndex((n) => n.asn === spec.asn);
      const net = w.networks[a]!;
      // The extra rate that takes the network's human traffic to rateFactor times its usual level.
      const human = net.browserFamilyIds.reduce((acc, f) => acc + net.familyWeights[net.familyIds.indexOf(f)]!, 0);
      const humanShare = human / net.familyWeights.reduce((x, y) => x + y, 0);
      const peak = base * net.share * humanShare * (spec.rateFactor - 1);
      const ramp = Math.min(10_000, len / 4);
      sources.push(
        rampedSource(r, b, peak, ramp, (t) => {
          const fam = net.browserFamilyIds[net.browserFamilies!.sample(r)]!;
          return benignRecord(r, t, a, fam, FAMILIES[fam]!.profile);
        }),
      );
      continue;
    }
    if (b.name === 'new_client') {
      const rate = base * spec.rateFactor;
      if (rate <= 0 || len <= 0) continue;
      const net = w.byAsn.get(spec.asn!)!;
      const pool = newClientPool(net, spec.clientIps);
      const ja4 = spec.ja4!;
      let page = r.int(40);
      sources.push(
        poissonSource(r, b, rate, (t) => {
          const ipIdx = r.int(pool.length);
          const proto = r.next() < 0.85 ? 1 : 0;
          const x = r.next();
          let method = 'GET';
          let path: string;
          let status = 200;
          let bytes: number;
          if (x < 0.6) {
            path = `/api/partner/v1/inventory/${w.productIds[r.int(500)]!}`;
            bytes = r.logNormal(380, 0.2);
          } else if (x < 0.85) {
            // Catalogue pages in a loop, as a sync job walks them.
            path = `/api/partner/v1/products?page=${1 + (page++ % 40)}`;
            bytes = r.logNormal(24_000, 0.15);
          } else {
            method = 'POST';
            path = '/api/partner/v1/orders';
            status = r.next() < 0.97 ? 201 : 200;
            bytes = r.logNormal(520, 0.1);
          }
          return {
            timestamp: Math.floor(t),
            request_id: idPrefix + (counter++).toString(36),
            client_ip: pool[ipIdx]!,
            asn: net.asn,
            country: net.country,
            ja4,
            user_agent: proto === 1 ? 'PartnerSync/2.3 Go-http-client/2.0' : 'PartnerSync/2.3 Go-http-client/1.1',
            method,
            host: HOST_API,
            path,
            status,
            response_bytes: bytes,
            protocol: PROTOCOLS[proto]!,
            challenge: 'NONE',
          };
        }),
      );
      continue;
    }
    const rate = base * spec.rateFactor;
    if (rate <= 0 || len <= 0) continue;
    const net = w.byAsn.get(spec.asn!)!;
    const pool = w.attackPools[b.name];
    const ja4 = spec.ja4!;
    const name = b.name;
    let sweep = 0;
    const sortedIds = [...w.productIds].sort((x, y) => x - y);
    const sweepStart = r.int(sortedIds.length / 2);
    const uas =
      name === 'credential_stuffing'
        ? [...FAMILIES[Fam.Python]!.userAgents, ...CHROME_UAS]
        : name === 'scraper'
          ? [...FAMILIES[Fam.Headless]!.userAgents, CHROME_UAS[4]!]
          : [...FAMILIES[Fam.Curl]!.userAgents.slice(0, 2), CHROME_UAS[0]!];
    sources.push(
      poissonSource(
        r,
        b,
        rate,
        (t) => {
          const ipIdx = r.int(pool.length);
          let method = 'GET';
          let host = HOST_WWW;
          let path: string;
          let status: number;
          let bytes: number;
          let proto = 1;
          if (name === 'credential_stuffing') {
            path = '/login';
            proto = 0;
            if (r.next() < 0.1) {
              status = 200;
              bytes = r.logNormal(14_300, 0.1);
            } else {
              method = 'POST';
              status = st.credentialStuffing.sample(r);
              bytes = r.logNormal(status === 200 ? 1_900 : 410, 0.1);
            }
          } else if (name === 'scraper') {
            const k = sweepStart + sweep++;
            // Past the catalogue's end the sweep guesses ids, which mostly do not exist.
            const id = k < sortedIds.length ? sortedIds[k]! : sortedIds[sortedIds.length - 1]! + (k - sortedIds.length + 1) * 7;
            path = `/product/${id}`;
            status = k < sortedIds.length ? st.scraper.sample(r) : 404;
            bytes = status === 200 ? r.logNormal(7_500, 0.25) : r.logNormal(3_100, 0.3);
          } else {
            proto = r.next() < 0.7 ? 0 : 1;
            const x = r.next();
            if (x < 0.35) path = '/';
            else if (x < 0.5) path = `/?${r.int(0x7fffffff).toString(36)}`;
            else {
              path = `/api/search?q=${w.searchTerms[r.int(w.searchTerms.length)]!}`;
              host = HOST_API;
            }
            status = st.flood.sample(r);
            bytes = status === 200 ? r.logNormal(host === HOST_API ? 6_200 : 71_000, 0.3) : r.logNormal(600, 0.2);
          }
          return {
            timestamp: Math.floor(t),
            request_id: idPrefix + (counter++).toString(36),
            client_ip: pool[ipIdx]!,
            asn: net.asn,
            country: net.country,
            ja4,
            user_agent: uas[ipIdx % uas.length]!,
            method,
            host,
            path,
            status,
            response_bytes: bytes,
            protocol: PROTOCOLS[proto]!,
            challenge: 'NONE',
          };
        },
        name,
      ),
    );
  }

  // Late arrivals wait in a binary min-heap keyed by arrival time.
  const heapKey: number[] = [];
  const heapVal: LabelledEvent[] = [];
  const push = (key: number, v: LabelledEvent): void => {
    let i = heapKey.length;
    heapKey.push(key);
    heapVal.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heapKey[p]! <= key) break;
      heapKey[i] = heapKey[p]!;
      heapVal[i] = heapVal[p]!;
      i = p;
    }
    heapKey[i] = key;
    heapVal[i] = v;
  };
  const pop = (): LabelledEvent => {
    const top = heapVal[0]!;
    const lastKey = heapKey.pop()!;
    const lastVal = heapVal.pop()!;
    const n = heapKey.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const rr = l + 1;
        const c = rr < n && heapKey[rr]! < heapKey[l]! ? rr : l;
        if (heapKey[c]! >= lastKey) break;
        heapKey[i] = heapKey[c]!;
        heapVal[i] = heapVal[c]!;
        i = c;
      }
      heapKey[i] = lastKey;
      heapVal[i] = lastVal;
    }
    return top;
  };

  for (;;) {
    let src: Source | undefined;
    let t = Infinity;
    for (const s of sources) {
      if (s.next < t) {
        t = s.next;
        src = s;
      }
    }
    if (!src || t >= endMs) break;
    const log = src.emit(t);
    if (!log) continue;
    const ev: LabelledEvent = { log, label: src.label };
    const r = src.rng;
    if (jitter > 0 && r.next() < LATE_SHARE) {
      push(t + r.next() * jitter, ev);
      continue;
    }
    while (heapKey.length > 0 && heapKey[0]! <= t) yield pop();
    yield ev;
  }
  while (heapKey.length > 0) yield pop();
}
