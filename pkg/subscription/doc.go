// Package subscription holds the subscription registry: the event-type
// filter matcher, the JetStream KV store (the truth), the Redis cache the
// deliverers look subscriptions up in, and the Syncer that keeps the two
// coherent.
//
// # Truth
//
// The KV bucket stream.SubscriptionsBucket holds one key per subscription,
// stream.SubscriptionKey(tenant, id) = "<tenant>.<id>", whose value is the
// protojson (UseProtoNames) of *hooklinev1.Subscription without the one-time
// `secret` field. The KV revision of a key orders its changes.
//
// # Redis layout (the lookup cache; flushing it loses nothing)
//
//	hookline:subs:ready        hash: field "*" present only once a Syncer has
//	                           replayed every KV key into Redis since the
//	                           last flush or restart; one field per tenant
//	                           that has a hash. A tenant listed here whose
//	                           hash is missing was evicted: the lookup is
//	                           "unknown" (answered from KV, "*" removed, the
//	                           bucket replayed), never "no subscriptions";
//	                           field "@origin" names the bucket (its stream's
//	                           creation time) whose revisions the cache holds,
//	                           "@wipe" marks a reset whose replay must wipe
//	                           the tenant hashes first (see rewind.go)
//	hookline:subs:sync         the replay token (a random nonce, SET NX with
//	                           a lease renewed while the replay runs): one
//	                           Syncer at a time may mark the cache ready, and
//	                           only if its token survived the whole replay, so
//	                           a FLUSHALL during a replay cannot leave a
//	                           "ready" but partial cache, and several Syncers
//	                           no longer cancel each other's replays
//	hookline:subs:t:<tenant>   hash: subscription id → "<rev> <json>", or the
//	                           tombstone "<rev> " for a deleted subscription,
//	                           pruned by the Syncer an hour after the delete
//
// Every write goes through one Lua script that compares revisions, so an
// older revision never overwrites a newer one (nor resurrects a deleted
// subscription). A lookup reads the marker and the tenant's hash in one
// MULTI/EXEC, so a FLUSHALL between the two cannot yield a partial answer.
// A tombstone pruned from a hash that it leaves empty also takes the
// tenant out of the ready hash (no subscriptions, known).
// When the marker is missing, or Redis cannot be reached, the Cache answers
// from the Store and, for a missing marker, asks the Syncer to replay.
//
// The two keys of a lookup are in different hash slots: this layout needs a
// single Redis (or a primary with replicas / Sentinel), not Redis Cluster.
package subscription
