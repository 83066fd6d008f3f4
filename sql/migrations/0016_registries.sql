-- Do-not-call registries with their age (dialer/registries.py): each imported copy of a
-- registry (`dialer dnc import FILE --registry NAME --as-of DATE`), and on each listed number
-- the registry it came from and, when the file says, the day it was registered there.

CREATE TABLE dnc_registry_copies (
    id          bigserial PRIMARY KEY,
    registry    text NOT NULL CHECK (registry ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    as_of       date NOT NULL,      -- the day the registry's administrator gave out this copy
    source      text NOT NULL,      -- the file's name
    sha256      text NOT NULL,
    numbers     integer NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dnc_registry_copies_newest ON dnc_registry_copies (registry, as_of DESC);

ALTER TABLE dnc
    ADD COLUMN registry      text,
    ADD COLUMN registered_on date,
    ADD COLUMN copy_id       bigint REFERENCES dnc_registry_copies (id);
