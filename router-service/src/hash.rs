//! Maps keyed by ids (agents, sessions, customers, apps) on the decision path. They hash with
//! foldhash, seeded once per process, rather than the standard library's SipHash: the keys
//! come from authenticated callers and the configuration, and SipHash was a measurable part
//! of every callback (perf on the load run).

/// A hash map with foldhash's seeded hasher; build it with `FastMap::default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
