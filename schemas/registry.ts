import avro from 'avsc';
import { BurstwatchError } from '../errors.js';

/** Connection settings for a Confluent-compatible schema registry (Confluent SR, Karapace, Apicurio ccompat). */
export interface RegistryOptions {
  /** Base URL, e.g. `http://127.0.0.1:18081`. */
  url: string;
  /** HTTP basic auth `user:password`, if the registry needs it. */
  basicAuth?: string;
  /** Per-request timeout, ms. Default 5000. */
  timeoutMs?: number;
}

/** The registry could not be reached or answered with a server error; retrying may help. */
export class RegistryUnavailableError extends BurstwatchError {
  constructor(message: string, cause?: unknown) {
    super(message, { retriable: true, cause });
  }
}

/** Minimal client of the Confluent Schema Registry REST API (only what decoding and producing need). */
export class SchemaRegistryClient {
  private readonly byId = new Map<number, avro.Type | null>();
  private readonly headers: Record<string, string>;

  constructor(private readonly options: RegistryOptions) {
    this.headers = { 'content-type': 'application/vnd.schemaregistry.v1+json' };
    if (options.basicAuth) {
      this.headers.authorization = `Basic ${Buffer.from(options.basicAuth).toString('base64')}`;
    }
  }

  /** The writer schema with this id, or null when the registry says it does not exist (404). Cached. */
  async getById(id: number): Promise<avro.Type | null> {
    if (this.byId.has(id)) return this.byId.get(id) ?? null;
    const res = await this.request('GET', `/schemas/ids/${id}`);
    if (res.status === 404) {
      this.byId.set(id, null);
      return null;
    }
    const body = (await res.json()) as { schema: string; schemaType?: string };
    if (body.schemaType && body.schemaType !== 'AVRO') {
      this.byId.set(id, null);
      return null;
    }
    const type = avro.Type.forSchema(JSON.parse(body.schema) as avro.Schema);
    this.byId.set(id, type);
    return type;
  }

  /** Whether an id is already known (positively or negatively) without a network call. */
  cached(id: number): avro.Type | null | undefined {
    return this.byId.get(id);
  }

  /** Registers `schema` under `subject` and returns its id (idempotent in the registry). */
  async register(subject: string, schema: avro.Type | object): Promise<number> {
    const json = JSON.stringify(schema instanceof avro.Type ? schema.schema() : schema);
    const res = await this.request('POST', `/subjects/${encodeURIComponent(subject)}/versions`, {
      schema: json,
    });
    if (!res.ok) throw new BurstwatchError(`registry refused schema for ${subject}: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: number };
    this.byId.set(id, schema instanceof avro.Type ? schema : avro.Type.forSchema(schema as avro.Schema));
    return id;
  }

  private async request(method: string, path: string, body?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(this.options.url.replace(/\/$/, '') + path, {
        method,
        headers: this.headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
      });
    } catch (err) {
      throw new RegistryUnavailableError(`schema registry ${this.options.url} unreachable`, err);
    }
    if (res.status >= 500) {
      throw new RegistryUnavailableError(`schema registry ${this.options.url} answered ${res.status}`);
    }
    return res;
  }
}
