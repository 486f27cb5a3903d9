-- tocsin's PostgreSQL schema, version 1. Values are the same JSON text the
-- sled backend stores, so backups move between the two unchanged; the
-- columns beside them are what queries filter and sort on.

CREATE SEQUENCE incident_numbers START 1;

CREATE TABLE incidents (
    id          bigint PRIMARY KEY,
    status      text NOT NULL,
    severity    text NOT NULL,
    service     text NOT NULL,
    value       text NOT NULL
);
-- The open incidents, for listings and gauges that never touch history.
CREATE INDEX incidents_open ON incidents (id) WHERE status <> 'resolved';
CREATE INDEX incidents_by_status ON incidents (status, id);

-- One open incident per (service, dedup key): the primary key is the
-- unique index that makes two replicas opening the same one conflict.
CREATE TABLE open_incidents (
    service     text NOT NULL,
    dedup_key   text NOT NULL,
    incident    bigint NOT NULL,
    PRIMARY KEY (service, dedup_key)
);

CREATE TABLE recently_resolved (
    service     text NOT NULL,
    dedup_key   text NOT NULL,
    value       text NOT NULL,
    PRIMARY KEY (service, dedup_key)
);

CREATE TABLE timeline (
    incident    bigint NOT NULL,
    seq         bigint NOT NULL,
    value       text NOT NULL,
    PRIMARY KEY (incident, seq)
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    incident    bigint,
    value       text NOT NULL
);

CREATE TABLE changes (
    id          bigserial PRIMARY KEY,
    service     text NOT NULL,
    at          timestamptz NOT NULL,
    value       text NOT NULL
);
CREATE INDEX changes_by_service ON changes (service, at, id);

-- `key` is the sled key (due time first), so ordering by it is due order.
CREATE TABLE timers (
    key         bytea PRIMARY KEY,
    due         timestamptz NOT NULL,
    incident    bigint NOT NULL,
    value       text NOT NULL
);

CREATE TABLE outbox (
    key         text PRIMARY KEY,
    incident    bigint NOT NULL,
    pending     boolean NOT NULL,
    due         timestamptz NOT NULL,
    claimed_by  text,
    lease_until timestamptz,
    value       text NOT NULL
);
CREATE INDEX outbox_queue ON outbox (due, key) WHERE pending;
CREATE INDEX outbox_by_incident ON outbox (incident);

CREATE TABLE channels (
    platform    text NOT NULL,
    channel     text NOT NULL,
    incident    bigint NOT NULL,
    PRIMARY KEY (platform, channel)
);

CREATE TABLE summaries (
    incident    bigint PRIMARY KEY,
    value       text NOT NULL
);

CREATE TABLE overrides (
    id          bigserial PRIMARY KEY,
    schedule    text NOT NULL,
    value       text NOT NULL
);
CREATE INDEX overrides_by_schedule ON overrides (schedule, id);

CREATE TABLE tokens (
    id          text PRIMARY KEY,
    value       text NOT NULL
);

-- Counts of history (incidents, events), moved by each transaction, so
-- /metrics never counts rows.
CREATE TABLE counters (
    name        text PRIMARY KEY,
    value       bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('incidents', 0), ('events', 0);

-- Small keyed records that need no columns of their own (a sled tree
-- name, its key, the JSON value), and the readiness probe.
CREATE TABLE kv (
    tree        text NOT NULL,
    key         bytea NOT NULL,
    value       text NOT NULL,
    PRIMARY KEY (tree, key)
);
