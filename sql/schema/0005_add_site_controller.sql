-- Who is responsible for a site's consent records (ISO/IEC TS 27560: the controller, its
-- contact, the jurisdiction) and where a visitor withdraws consent. All optional: shown
-- in the banner's policy link area and written into 27560 consent records when set.
ALTER TABLE sites
    ADD COLUMN controller_name    text CHECK (length(controller_name) BETWEEN 1 AND 200),
    ADD COLUMN controller_contact text CHECK (length(controller_contact) BETWEEN 1 AND 200),
    ADD COLUMN jurisdiction       text CHECK (jurisdiction ~ '^[A-Z]{2}(-[A-Z0-9]{1,3})?$'),
    ADD COLUMN withdrawal_url     text CHECK (withdrawal_url ~ '^https?://[^\s]+$');
