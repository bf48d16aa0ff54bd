/** The types user code sees: events, event schemas, and what JSON does to values. */

/** Event data when an app declares no schemas: any JSON object. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyData = Record<string, any>;

/**
 * An app's events by name, for typed `event.data`:
 *
 * ```ts
 * type Events = { "app/user.signup": { data: { user_id: number; email: string } } };
 * const tether = new Tether<Events>({ appId: "shop" });
 * ```
 */
export type EventSchemas = Record<string, { data: object }>;

/** What an app without schemas accepts: any event name, any object as data. */
export type UntypedEvents = Record<string, { data: AnyData }>;

/** An event as a function receives it. */
export interface TetherEvent<TName extends string = string, TData = AnyData> {
  /** For example `app/user.signup`. */
  readonly name: TName;
  /** The event's data, a JSON object. */
  readonly data: TData;
  /** Its id (deduplicates within 24 hours). */
  readonly id: string;
  /** Who caused it, when the sender said. */
  readonly user?: Record<string, unknown>;
  /** When it happened, in milliseconds since the epoch. */
  readonly ts: number;
}

/** An event to send. Without an id the control plane assigns one. */
export interface EventPayload<TName extends string = string, TData = AnyData> {
  name: TName;
  data?: TData;
  /** A deduplication key: a second event with this id within 24 hours is dropped. */
  id?: string;
  user?: Record<string, unknown>;
  /** When it happened (ms since the epoch); default: when received. */
  ts?: number;
}

/** Names of the events the control plane itself emits (`tether/function.failed`). */
export type TetherInternalEventName = `tether/${string}`;

type IsUntyped<TEvents> = string extends keyof TEvents ? true : false;

/** Names an event trigger may use: a declared name, a prefix wildcard, or a `tether/` event. */
export type TriggerName<TEvents extends EventSchemas> =
  IsUntyped<TEvents> extends true
    ? string
    : (keyof TEvents & string) | `${string}*` | TetherInternalEventName;

/** Names `waitForEvent`, `cancelOn` and `send` accept. */
export type EventName<TEvents extends EventSchemas> =
  IsUntyped<TEvents> extends true ? string : (keyof TEvents & string) | TetherInternalEventName;

type Matching<TEvents extends EventSchemas, TName extends string> = TName extends `${infer Prefix}*`
  ? Extract<keyof TEvents, `${Prefix}${string}`>
  : Extract<keyof TEvents, TName>;

/** The event a trigger name delivers (a union for a wildcard). */
export type EventFor<TEvents extends EventSchemas, TName extends string> =
  IsUntyped<TEvents> extends true
    ? TetherEvent<TName extends `${string}*` ? string : TName>
    : [Matching<TEvents, TName>] extends [never]
      ? TetherEvent
      : {
          [K in Matching<TEvents, TName> & string]: TetherEvent<K, TEvents[K]["data"]>;
        }[Matching<TEvents, TName> & string];

/** A payload to send for one of the app's events. */
export type PayloadFor<TEvents extends EventSchemas> =
  IsUntyped<TEvents> extends true
    ? EventPayload
    : { [K in keyof TEvents & string]: EventPayload<K, TEvents[K]["data"]> }[keyof TEvents & string];

type JsonPrimitive = string | number | boolean | null;

/**
 * What a value becomes after a JSON round trip, which is what a memoized step
 * returns on every replay: a `Date` becomes a string, `undefined` becomes
 * `null`, functions are dropped.
 */
export type Jsonify<T> = 0 extends 1 & T
  ? T // any
  : unknown extends T
    ? unknown
    : T extends JsonPrimitive
      ? T
      : // eslint-disable-next-line @typescript-eslint/no-invalid-void-type -- a step that returns nothing
        T extends undefined | void
        ? null
        : T extends { toJSON(): infer J }
          ? Jsonify<J>
          : T extends bigint | symbol | ((...args: never[]) => unknown)
            ? never
            : T extends readonly unknown[]
              ? { [I in keyof T]: Jsonify<T[I]> }
              : T extends object
                ? {
                    [K in keyof T as K extends symbol
                      ? never
                      : T[K] extends (...args: never[]) => unknown
                        ? never
                        : K]: Jsonify<Exclude<T[K], undefined>>;
                  }
                : never;
