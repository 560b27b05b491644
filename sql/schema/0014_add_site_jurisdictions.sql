-- Jurisdiction rules of a site (docs/jurisdictions.md): the ordered rules as the admin
-- API checked them (cmp.jurisdiction), and the rule of visitors of unknown location.
-- Null: the site has one opt-in rule for everyone, as before rules existed.
ALTER TABLE sites
    ADD COLUMN jurisdictions jsonb CHECK (jsonb_typeof(jurisdictions) = 'array'),
    ADD COLUMN fallback      text CHECK (fallback ~ '^[a-z0-9][a-z0-9-]{0,31}$');
