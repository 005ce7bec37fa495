-- The reporting side of the catalog sync; {schema} is the reporting schema.
-- Idempotent: run by the service when it first connects.

CREATE SCHEMA IF NOT EXISTS {schema};

-- Reference data the enrich step looks up (one read per batch).
CREATE TABLE IF NOT EXISTS {schema}.categories (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    department  text NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.fx_rates (
    currency     text PRIMARY KEY,
    eur_per_unit numeric(12, 6) NOT NULL CHECK (eur_per_unit > 0)
);
CREATE TABLE IF NOT EXISTS {schema}.price_bands (
    band     text PRIMARY KEY,
    min_eur  numeric(12, 2) NOT NULL,
    max_eur  numeric(12, 2)            -- exclusive; NULL for the top band
);
INSERT INTO {schema}.categories VALUES
    ('books', 'Books', 'Media'), ('music', 'Music', 'Media'), ('games', 'Video games', 'Media'),
    ('kitchen', 'Kitchen', 'Home'), ('garden', 'Garden', 'Home'), ('tools', 'Tools', 'Home'),
    ('shoes', 'Shoes', 'Fashion'), ('bags', 'Bags', 'Fashion')
ON CONFLICT DO NOTHING;
INSERT INTO {schema}.fx_rates VALUES ('EUR', 1), ('USD', 0.92), ('GBP', 1.17), ('CHF', 1.04)
ON CONFLICT DO NOTHING;
INSERT INTO {schema}.price_bands VALUES
    ('budget', 0, 20), ('standard', 20, 100), ('premium', 100, 1000), ('luxury', 1000, NULL)
ON CONFLICT DO NOTHING;

-- The loaded products: one row per live product, as of source_lsn.
CREATE TABLE IF NOT EXISTS {schema}.product_snapshot (
    product_id     bigint PRIMARY KEY,
    sku            text NOT NULL,
    name           text NOT NULL,
    category_code  text NOT NULL,
    category_name  text NOT NULL,
    department     text NOT NULL,
    price          numeric(12, 2) NOT NULL,
    currency       text NOT NULL,
    price_eur      numeric(12, 2) NOT NULL,
    price_band     text NOT NULL,
    updated_at     timestamptz,
    source_lsn     bigint NOT NULL,        -- WAL position of the change loaded last
    source_ts      timestamptz NOT NULL,   -- its commit time
    loaded_at      timestamptz NOT NULL
);

-- Deleted products and the position of their delete, so that a redelivered
-- older change of the product can be recognized and not bring it back.
CREATE TABLE IF NOT EXISTS {schema}.product_deleted (
    product_id  bigint PRIMARY KEY,
    source_lsn  bigint NOT NULL
);

-- How far each pipeline has synced; moved in the transaction of each load.
CREATE TABLE IF NOT EXISTS {schema}.sync_watermark (
    pipeline        text PRIMARY KEY,
    last_lsn        bigint NOT NULL,        -- highest source position handled
    last_source_ts  timestamptz NOT NULL,   -- commit time of the latest change handled
    changes_loaded  bigint NOT NULL,        -- source changes applied, each counted once
    batches         bigint NOT NULL,        -- loads that applied at least one change
    updated_at      timestamptz NOT NULL
);

-- One row per bulk load (redeliveries included: they show as loaded = 0).
CREATE TABLE IF NOT EXISTS {schema}.sync_batches (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline        text NOT NULL,
    changes         integer NOT NULL,       -- changes in the batch, rejected ones included
    loaded          integer NOT NULL,       -- of those, applied now (not seen before)
    rejected        integer NOT NULL,       -- dead-lettered by the validate step
    last_lsn        bigint NOT NULL,
    last_source_ts  timestamptz NOT NULL,
    loaded_at       timestamptz NOT NULL
);
