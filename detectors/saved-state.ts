import type { z } from 'zod';

/**
 * The first checks of every detector's `fromJSON`: `state` is an object whose `options` pass the
 * detector's schema. Returns the object and the parsed options; throws a TypeError prefixed by
 * `where` that names what is wrong.
 */
export function savedState<S extends z.ZodType>(where: string, state: unknown, schema: S): { o: Record<string, unknown>; options: z.output<S> } {
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new TypeError(`${where}: expected an object`);
  const o = state as Record<string, unknown>;
  const parsed = schema.safeParse(o.options);
  if (!parsed.success) throw new TypeError(`${where}: bad 'options': ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return { o, options: parsed.data };
}
