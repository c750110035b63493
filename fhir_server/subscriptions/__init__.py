"""FHIR R4 Subscriptions with the rest-hook channel, as a general server feature.

- registry.py: who owns each Subscription, the per-instance cache of active ones by resource type, and
  the write hook (storage/store.py calls it after every successful write; it only enqueues).
- lifecycle.py: `requested` → `active` (criteria, channel and payload checked; no handshake), and the
  `error` status after repeated delivery failures.
- delivery.py: evaluating a written version against the criteria (with the owner's access rights) and
  the rest-hook call itself.

Everything that leaves the server goes through the durable queue of jobs/outbox.py.
"""
