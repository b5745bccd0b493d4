--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: audit; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit (
    id bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    service text NOT NULL,
    key_id text DEFAULT ''::text NOT NULL,
    action text NOT NULL,
    actor text DEFAULT ''::text NOT NULL,
    outcome text NOT NULL,
    status integer NOT NULL,
    code text NOT NULL,
    message text DEFAULT ''::text NOT NULL,
    before jsonb,
    after jsonb,
    policy_revision text DEFAULT ''::text NOT NULL,
    client_ip text DEFAULT ''::text NOT NULL,
    request_id text DEFAULT ''::text NOT NULL,
    idempotency_key text DEFAULT ''::text NOT NULL,
    revision bigint,
    CONSTRAINT audit_check CHECK (((outcome = 'allowed'::text) = (revision IS NOT NULL))),
    CONSTRAINT audit_outcome_check CHECK ((outcome = ANY (ARRAY['allowed'::text, 'refused'::text, 'failed'::text])))
);


--
-- Name: audit_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.audit_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: audit_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.audit_id_seq OWNED BY public.audit.id;


--
-- Name: changes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.changes (
    revision bigint NOT NULL,
    op text NOT NULL,
    key_id text NOT NULL,
    service text NOT NULL,
    "row" jsonb,
    actor text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT changes_check CHECK (((op = 'delete'::text) = ("row" IS NULL))),
    CONSTRAINT changes_op_check CHECK ((op = ANY (ARRAY['put'::text, 'delete'::text, 'ip'::text])))
);


--
-- Name: head; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.head (
    id boolean DEFAULT true NOT NULL,
    revision bigint NOT NULL,
    epoch text NOT NULL,
    seeded_at timestamp with time zone,
    CONSTRAINT head_id_check CHECK (id)
);


--
-- Name: ip_restrictions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.ip_restrictions (
    service text NOT NULL,
    settings jsonb NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.keys (
    id text NOT NULL,
    service text NOT NULL,
    name text NOT NULL,
    secret_hash bytea NOT NULL,
    configuration jsonb NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    revision bigint NOT NULL,
    CONSTRAINT keys_secret_hash_check CHECK ((length(secret_hash) = 32))
);


--
-- Name: members; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.members (
    id text NOT NULL,
    service text NOT NULL,
    role text NOT NULL,
    token_hash bytea NOT NULL,
    CONSTRAINT members_token_hash_check CHECK ((length(token_hash) = 32))
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: services; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.services (
    id text NOT NULL,
    plan text NOT NULL,
    key_count integer DEFAULT 0 NOT NULL,
    CONSTRAINT services_key_count_check CHECK ((key_count >= 0))
);


--
-- Name: audit id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit ALTER COLUMN id SET DEFAULT nextval('public.audit_id_seq'::regclass);


--
-- Data for Name: audit; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.audit VALUES (1, '2025-06-01 12:00:17+00', 'team-demo', 'key_ebbchycc9r26y3t6', 'create', 'team-demo-admin', 'allowed', 201, 'allowed', '', NULL, '{"name": "web", "revision": 1, "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'keystoretest', '192.0.2.7', 'g1', 'idem-1', 2);
INSERT INTO public.audit VALUES (2, '2025-06-01 12:00:19+00', 'team-demo', 'key_ebbchycc9r26y3t6', 'update', 'team-demo-admin', 'allowed', 200, 'allowed', '', '{"name": "web", "revision": 1, "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', '{"name": "web2", "revision": 2, "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'keystoretest', '192.0.2.7', 'g2', '', 3);
INSERT INTO public.audit VALUES (3, '2025-06-01 12:00:21+00', 'team-demo', 'key_ebbchycc9r26y3t6', 'rotate', 'team-demo-admin', 'allowed', 200, 'allowed', '', '{"name": "web2", "revision": 2, "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', '{"name": "web2", "revision": 3, "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'keystoretest', '192.0.2.7', 'g3', '', 4);
INSERT INTO public.audit VALUES (4, '2025-06-01 12:00:23+00', 'team-demo', 'key_b64aczgasqp2x4w7', 'create', 'team-demo-admin', 'allowed', 201, 'allowed', '', NULL, '{"name": "gone", "revision": 1, "contentApi": {"default": {"get": false, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'keystoretest', '192.0.2.7', 'g4', '', 5);
INSERT INTO public.audit VALUES (5, '2025-06-01 12:00:24+00', 'team-demo', 'key_b64aczgasqp2x4w7', 'delete', 'team-demo-admin', 'allowed', 204, 'allowed', '', '{"name": "gone", "revision": 1, "contentApi": {"default": {"get": false, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', NULL, 'keystoretest', '192.0.2.7', 'g5', '', 6);
INSERT INTO public.audit VALUES (6, '2025-06-01 12:00:27+00', 'team-demo', '', 'create', 'team-demo-editor', 'refused', 403, 'forbidden', 'Forbidden', NULL, '{"name": "web2", "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'keystoretest', '192.0.2.7', 'g10', '', NULL);


--
-- Data for Name: changes; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.changes VALUES (2, 'put', 'key_ebbchycc9r26y3t6', 'team-demo', '{"id": "key_ebbchycc9r26y3t6", "name": "web", "service": "team-demo", "revision": 1, "createdAt": "2025-06-01T12:00:16Z", "createdBy": "team-demo-admin", "updatedAt": "2025-06-01T12:00:16Z", "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "secretHash": "sha256:d85eb55769bb404a83fb3ca04285fb57b546a5484117006d01aa3784e9f47aa5", "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'team-demo-admin', '2026-12-06 10:15:35.460266+00');
INSERT INTO public.changes VALUES (3, 'put', 'key_ebbchycc9r26y3t6', 'team-demo', '{"id": "key_ebbchycc9r26y3t6", "name": "web2", "service": "team-demo", "revision": 2, "createdAt": "2025-06-01T12:00:16Z", "createdBy": "team-demo-admin", "updatedAt": "2025-06-01T12:00:18Z", "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "secretHash": "sha256:d85eb55769bb404a83fb3ca04285fb57b546a5484117006d01aa3784e9f47aa5", "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'team-demo-admin', '2026-12-06 10:15:35.550307+00');
INSERT INTO public.changes VALUES (4, 'put', 'key_ebbchycc9r26y3t6', 'team-demo', '{"id": "key_ebbchycc9r26y3t6", "name": "web2", "service": "team-demo", "revision": 3, "createdAt": "2025-06-01T12:00:16Z", "createdBy": "team-demo-admin", "updatedAt": "2025-06-01T12:00:20Z", "contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "secretHash": "sha256:009188554af7c692c70aa7eda070fd9a75d8332bf6ff1ddd7658ff199103ed58", "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'team-demo-admin', '2026-12-06 10:15:35.601559+00');
INSERT INTO public.changes VALUES (5, 'put', 'key_b64aczgasqp2x4w7', 'team-demo', '{"id": "key_b64aczgasqp2x4w7", "name": "gone", "service": "team-demo", "revision": 1, "createdAt": "2025-06-01T12:00:22Z", "createdBy": "team-demo-admin", "updatedAt": "2025-06-01T12:00:22Z", "contentApi": {"default": {"get": false, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {}}, "secretHash": "sha256:b9ad46cb6215fd9cdb0b1e05a464ee0a31bbe717793f1e44996bef0e9168e30a", "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'team-demo-admin', '2026-12-06 10:15:35.625759+00');
INSERT INTO public.changes VALUES (6, 'delete', 'key_b64aczgasqp2x4w7', 'team-demo', NULL, 'team-demo-admin', '2026-12-06 10:15:35.630376+00');
INSERT INTO public.changes VALUES (7, 'ip', '', 'business-demo', '{"apis": {"news": ["2001:db8::/32"]}, "default": ["203.0.113.0/24"]}', 'business-demo-admin', '2026-12-06 10:15:35.65806+00');


--
-- Data for Name: head; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.head VALUES (true, 7, 'd896d82280ad9db651fab6b9ba671c1d', '2026-12-06 10:15:35.112036+00');


--
-- Data for Name: ip_restrictions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.ip_restrictions VALUES ('business-demo', '{"apis": {"news": ["2001:db8::/32"]}, "default": ["203.0.113.0/24"]}', 'business-demo-admin', '2026-12-06 10:15:35.65806+00');


--
-- Data for Name: keys; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.keys VALUES ('team-demo-read', 'team-demo', 'Demo read-only key', '\xd85dc6fc5108dacd6dd5889f018da21fc96bf8b6459c97b0592122f1e4a1d468', '{"contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'seed', '2025-01-01 00:00:00+00', '2025-01-01 00:00:00+00', 1);
INSERT INTO public.keys VALUES ('key_ebbchycc9r26y3t6', 'team-demo', 'web2', '\x009188554af7c692c70aa7eda070fd9a75d8332bf6ff1ddd7658ff199103ed58', '{"contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": true}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}', 'team-demo-admin', '2025-06-01 12:00:16+00', '2025-06-01 12:00:20+00', 3);


--
-- Data for Name: members; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.members VALUES ('hobby-demo-admin', 'hobby-demo', 'admin', '\x6a935e1a871137d60242fbac838ac40c0f8a5d94c94837b4aeb4bea54cc25462');
INSERT INTO public.members VALUES ('hobby-demo-editor', 'hobby-demo', 'editor', '\x78b8a2caeaaba8fc17640040af95c9040ae592d20f6c84e42e3c7fe3f42b37e5');
INSERT INTO public.members VALUES ('team-demo-admin', 'team-demo', 'admin', '\x0e92cc4c207df1e9ba47aa9ea3ada925e6e22c74cd835ba8ff4b0a1e84d95789');
INSERT INTO public.members VALUES ('team-demo-editor', 'team-demo', 'editor', '\x9d53c8ef8b94ed770fc264717b0356b0602a6291fce8d183702b7e9aa2aec335');
INSERT INTO public.members VALUES ('business-demo-admin', 'business-demo', 'admin', '\xf7b92b8afbe979e434ce6a807b5fc20d871192615eb63f9c366e24945c18d04e');
INSERT INTO public.members VALUES ('business-demo-editor', 'business-demo', 'editor', '\x691f3b9be0007b20932890eb38b45ed49af349373a0027c5c8560046dbe8399d');
INSERT INTO public.members VALUES ('advanced-demo-admin', 'advanced-demo', 'admin', '\xa8351d5191b8dbeb216401bd6e9e5b161ef729eb46f2106c0fbcc2c76141d43e');
INSERT INTO public.members VALUES ('advanced-demo-editor', 'advanced-demo', 'editor', '\xd946ff75f28ae7ad52987f6e7371b559a5ec198efcc67bc4530d4679fab7a5d9');
INSERT INTO public.members VALUES ('enterprise-demo-admin', 'enterprise-demo', 'admin', '\x431587d9bc21f8a4fa6dd5611838fd72958fefdc819195b0effe3de94fef6367');
INSERT INTO public.members VALUES ('enterprise-demo-editor', 'enterprise-demo', 'editor', '\x1df715e88d2a71e5a74ede1cb3a78665425b66beb4ec4dd8417ac089b45b7793');


--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_migrations VALUES (1, '0001_init.sql', '2026-12-06 10:15:35.112036+00');
INSERT INTO public.schema_migrations VALUES (2, '0002_audit.sql', '2026-12-06 10:15:35.112036+00');
INSERT INTO public.schema_migrations VALUES (3, '0003_ip_restrictions.sql', '2026-12-06 10:15:35.112036+00');


--
-- Data for Name: services; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.services VALUES ('hobby-demo', 'hobby', 0);
INSERT INTO public.services VALUES ('business-demo', 'business', 0);
INSERT INTO public.services VALUES ('advanced-demo', 'advanced', 0);
INSERT INTO public.services VALUES ('enterprise-demo', 'enterprise', 0);
INSERT INTO public.services VALUES ('team-demo', 'team', 2);


--
-- Name: audit_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.audit_id_seq', 6, true);


--
-- Name: audit audit_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit
    ADD CONSTRAINT audit_pkey PRIMARY KEY (id);


--
-- Name: changes changes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.changes
    ADD CONSTRAINT changes_pkey PRIMARY KEY (revision);


--
-- Name: head head_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.head
    ADD CONSTRAINT head_pkey PRIMARY KEY (id);


--
-- Name: ip_restrictions ip_restrictions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.ip_restrictions
    ADD CONSTRAINT ip_restrictions_pkey PRIMARY KEY (service);


--
-- Name: keys keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.keys
    ADD CONSTRAINT keys_pkey PRIMARY KEY (id);


--
-- Name: keys keys_secret_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.keys
    ADD CONSTRAINT keys_secret_hash_key UNIQUE (secret_hash);


--
-- Name: members members_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_pkey PRIMARY KEY (id);


--
-- Name: members members_token_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_token_hash_key UNIQUE (token_hash);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: services services_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.services
    ADD CONSTRAINT services_pkey PRIMARY KEY (id);


--
-- Name: audit_idempotency; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX audit_idempotency ON public.audit USING btree (service, actor, idempotency_key) WHERE ((idempotency_key <> ''::text) AND (outcome = 'allowed'::text));


--
-- Name: audit_request_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_request_id ON public.audit USING btree (request_id) WHERE (request_id <> ''::text);


--
-- Name: audit_service_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_service_id ON public.audit USING btree (service, id);


--
-- Name: changes_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX changes_at ON public.changes USING btree (at);


--
-- Name: keys_service; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX keys_service ON public.keys USING btree (service);


--
-- Name: ip_restrictions ip_restrictions_service_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.ip_restrictions
    ADD CONSTRAINT ip_restrictions_service_fkey FOREIGN KEY (service) REFERENCES public.services(id) ON DELETE CASCADE;


--
-- Name: keys keys_service_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.keys
    ADD CONSTRAINT keys_service_fkey FOREIGN KEY (service) REFERENCES public.services(id);


--
-- Name: members members_service_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_service_fkey FOREIGN KEY (service) REFERENCES public.services(id);


--
-- PostgreSQL database dump complete
--


