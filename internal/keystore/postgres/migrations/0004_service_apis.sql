-- keygate's shared key store, version 4: a service's content API endpoints.
--
-- apis is the optional list of the service's content API endpoints (as
-- data/services.json's "apis" lists them): the keys policy's advice warns
-- about an individual permission naming an API not in it, and GET /v1/me
-- offers it to the console's API picker. NULL means the service does not
-- list its APIs (every service of a database made before this version);
-- an empty array means it has none.

ALTER TABLE services ADD COLUMN IF NOT EXISTS apis text[];
