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
//	hookline:subs:ready        marker: present only once the Syncer has
//	                           replayed every KV key into Redis since the
//	                           last flush or restart
//	hookline:subs:sync         the Syncer's replay token (a random nonce); the
//	                           ready marker is set only if the token survived
//	                           the whole replay, so a FLUSHALL during a replay
//	                           cannot leave a "ready" but partial cache
//	hookline:subs:t:<tenant>   hash: subscription id → "<rev> <json>", or the
//	                           tombstone "<rev> " for a deleted subscription,
//	                           pruned by the Syncer an hour after the delete
//
// Every write goes through one Lua script that compares revisions, so an
// older revision never overwrites a newer one (nor resurrects a deleted
// subscription). A lookup reads the marker and the tenant's hash in one
// MULTI/EXEC, so a FLUSHALL between the two cannot yield a partial answer.
// When the marker is missing, or Redis cannot be reached, the Cache answers
// from the Store and, for a missing marker, asks the Syncer to replay.
//
// The two keys of a lookup are in different hash slots: this layout needs a
// single Redis (or a primary with replicas / Sentinel), not Redis Cluster.
package subscription
