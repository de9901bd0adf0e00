// Package ratelimit decides whether one more request for a key (an API key
// ID, a client address, a route and address pair) fits its rate, a Limit
// such as "100/min" or "10/s burst=20". Limiter is the interface the HTTP
// layer consumes; Memory is the in-process implementation, and a shared one
// for clusters (Redis GCRA, in store/redis) must fit the same interface and
// give the same answers.
//
// # Algorithm
//
// Memory implements GCRA, the generic cell rate algorithm (ITU-T I.371; the
// "virtual scheduling" form), which is a token bucket stored as one number
// per key: the theoretical arrival time TAT. With emission interval
// T = Period/Count (in nanoseconds, rounded up) and tolerance
// tau = T·(Burst-1), an event at time now is allowed iff
// max(TAT, now) - now <= tau, and then TAT becomes max(TAT, now) + T. A
// denied event changes nothing. A TAT at or before now means a full bucket,
// so a key that is absent and a key whose TAT has passed are the same
// thing. With TAT the key's value after the decision, the Decision fields
// follow: Remaining = floor((T·Burst - (TAT - now))/T) when allowed (the
// number of further events that fit now), RetryAfter = TAT - tau - now when
// denied, and ResetAfter = TAT - now.
//
// # Invariants
//
//   - Exact under concurrency. Each key lives in one of up to 64 shards,
//     chosen by a per-limiter seeded hash (hash/maphash), and the whole
//     read-decide-write of an Allow happens under that shard's mutex. We
//     chose a sharded mutex over a per-entry atomic CAS loop: the map
//     look-up, insert and eviction must be atomic with the TAT update anyway
//     (a CAS on an entry that a concurrent eviction has just removed would be
//     lost, letting a request through uncounted), and entries held by value
//     need no per-key allocation. The critical section is a map access and a
//     few integer operations (tens of nanoseconds). N concurrent requests
//     for a key with r events left get exactly min(N, r) allowances.
//   - Never more permissive than configured. T is rounded up to the
//     nanosecond; limits whose interval is below MinInterval (over 10⁶/s per
//     key) or whose refill time exceeds MaxSpan are rejected, which keeps
//     that rounding under 0.1% and all arithmetic far from overflow.
//   - Monotonic time. Time is measured as a duration since NewMemory, so
//     with time.Now the monotonic clock is used: a wall-clock step neither
//     resets every limit nor freezes them.
//   - Fail closed. Allow with an invalid Limit denies. Validate limits (or
//     use ParseLimit) when loading configuration.
//   - No allocation on the hot path. An Allow for a key already held does
//     not allocate; only inserting a new key may (map growth).
//   - Bounded memory. At most MaxKeys keys are held (MaxKeys/shards per
//     shard), a TAT is an int64 stored by value, and the sweeper rebuilds a
//     shard's map after it shrinks, since Go maps do not give memory back.
//
// # Eviction, and what an attacker can make it forget
//
// Removing a key whose TAT has passed loses nothing: its next request sees a
// full bucket either way. The background sweeper removes only such keys, and
// only once their bucket has been full for IdleAfter (so the key has been
// idle at least that long), which spares active keys the cost of being
// re-inserted. A key under a long limit ("1/day") stays held while it owes
// time, however long it is idle.
//
// When a new key arrives at a full shard, the shard frees an eighth of its
// capacity at once, so that the O(capacity) scan is paid once per
// capacity/8 inserts: first every key whose TAT has passed (lossless); then,
// only if that is not enough, the keys with the smallest TATs. Removing a
// key whose TAT is still ahead forgives its debt TAT - now: its next
// requests see a full bucket, so it can make at most Burst more requests
// than its limit allows, once per eviction. The guarantee is:
//
//   - As long as fewer keys than a shard's capacity are owing time (TAT in
//     the future) at once, eviction forgets nothing.
//   - Beyond that, the least-owing keys are forgotten first: a key is
//     evicted only if fewer than an eighth of its shard owe less than it
//     does. A key being throttled (denied, or close to it) owes nearly
//     T·Burst. An attacker who sends one request per fresh key (rotating
//     IPv6 addresses, say) creates keys that owe one interval T, and those
//     are evicted first, together with any legitimate keys that owe as
//     little; such a key had used about one event of its burst and gets
//     back about that much. To get a throttled key forgotten, an attacker
//     must keep most of that key's shard (capacity MaxKeys/64 by default)
//     owing more than it, i.e. pay about a full burst of requests per
//     attacking key, against limits that also apply to those keys.
//   - We cannot promise more: with MaxKeys slots and more than MaxKeys
//     keys owing time, something must be forgotten. Size MaxKeys for the
//     number of keys expected to be active within one refill time, limit
//     by a coarser key (a /64 prefix rather than an IPv6 address) where an
//     attacker can mint keys, and keep a global limit behind per-key ones.
//
// Eviction under a flood costs O(capacity) (16384 entries with the defaults;
// about 0.5ms on a 2-vCPU box) once per capacity/8 inserts into that shard,
// holding that shard's lock; other shards are unaffected. Amortized, a new
// key costs a few hundred nanoseconds. Shard choice is seeded per limiter,
// so an attacker cannot aim keys at one shard.
package ratelimit
