--
-- PostgreSQL database dump
--

\restrict NZURtba64wSexFrYKIXYXzwdl4wfsaPeE4jAU95QzsCtiTMCr25F1tCH4sWqfhy

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
-- Name: items; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.items (
    id bigint NOT NULL,
    kind character varying(16) NOT NULL,
    path text NOT NULL,
    line integer NOT NULL,
    ext character varying(32) NOT NULL,
    modality character varying(8) NOT NULL,
    size bigint NOT NULL,
    mtime_ns bigint NOT NULL,
    content_hash character varying(64) NOT NULL,
    width integer,
    height integer,
    duration double precision,
    sample_rate integer,
    text text,
    model character varying(200) NOT NULL,
    indexed_at timestamp without time zone,
    status character varying(16) NOT NULL
);


--
-- Name: items_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.items_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: items_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.items_id_seq OWNED BY public.items.id;


--
-- Name: meta; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.meta (
    key character varying(64) NOT NULL,
    value text NOT NULL
);


--
-- Name: items id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.items ALTER COLUMN id SET DEFAULT nextval('public.items_id_seq'::regclass);


--
-- Data for Name: items; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.items VALUES (3, 'file', 'photos/img1.png', 0, 'png', 'image', 5389, 1796172772894275120, 'eccd69f04d4c322d60bbbf417f13316b5add95c904ae89174272690c9344a7c9', 48, 48, NULL, NULL, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (4, 'file', 'photos/img3.jpg', 0, 'jpg', 'image', 1004, 1796172772895904265, '73b4290b3cf3e89cf4a4a11a4ecefa4923b9adfdc6c9a8fd51163172f27740e9', 48, 48, NULL, NULL, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (5, 'file', 'photos/img5.png', 0, 'png', 'image', 5429, 1796172772897425287, '51e340a9804360cbdd44ccb494647dbe493366fc5e962525439a186dfe6055a6', 48, 48, NULL, NULL, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (6, 'file', 'pics/img0.jpg', 0, 'jpg', 'image', 1105, 1796172772888851010, 'a81af7d664b84b26f2d49e3e54a8f7adae7617df70a62d26b646198d87d97749', 48, 48, NULL, NULL, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (7, 'file', 'pics/img2.png', 0, 'png', 'image', 5426, 1796172772895252567, 'ee26f0faf5ed512e3e0efe50f1aac4df399bf5dba6cf498354198512aad3f260', 48, 48, NULL, NULL, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (8, 'file', 'pics/img4.png', 0, 'png', 'image', 5356, 1796172772896661501, '9e93c74907c0a33ff62d9c8892d9409ba68c74bbad5f644ec2b25db42310ce01', 48, 48, NULL, NULL, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (9, 'file', 'sounds/clip0.flac', 0, 'flac', 'audio', 23315, 1796172772899311248, '5982947c958d83fe4572deb350e1631e8ad73d1cc880050e62b8dc4d85f76de4', NULL, NULL, 1, 16000, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (10, 'file', 'sounds/clip1.wav', 0, 'wav', 'audio', 32044, 1796172772902408396, 'b73a818233f863d04a0f9b3c546429f083593c89a9c0249423f988c8f49a0f45', NULL, NULL, 1, 16000, NULL, 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (11, 'text-line', '/tmp/v1fixture/media-labels.txt', 1, '', 'text', 12, 0, '659c55b2584570d2452562ad99503719e59b5f78d53b6f02215a751e291736bf', NULL, NULL, NULL, NULL, 'a red square', 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (12, 'text-line', '/tmp/v1fixture/media-labels.txt', 2, '', 'text', 13, 0, 'b322384ae052fe58b5f942644701839a1c3121c2c755e828f45c7aaad34b60a8', NULL, NULL, NULL, NULL, 'a blue stripe', 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (1, 'file', 'notes/note0.txt', 0, 'txt', 'text', 34, 1796172772902975517, '8ebc0f63b7575018c752e84e2788c419689e2befa86c4352117805891b43d342', NULL, NULL, NULL, NULL, 'a note about night river bird car', 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');
INSERT INTO public.items VALUES (2, 'file', 'notes/note1.txt', 0, 'txt', 'text', 32, 1796172772903238061, '0396a9acd2ad87a821092c6db599802c5fb0249548157fc90e98d6889924e535', NULL, NULL, NULL, NULL, 'a note about car snow dog beach', 'xmr-tiny', '2026-12-02 00:52:55.266692', 'indexed');


--
-- Data for Name: meta; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.meta VALUES ('schema_version', '1');
INSERT INTO public.meta VALUES ('manifest', '{"version": 1, "root": "/tmp/v1fixture/media", "model": "xmr-tiny", "weights_hash": "v1-fixture", "dim": 32, "metric": "inner_product", "index_type": "Flat", "shard_size": 250000, "modalities": ["image", "audio", "text"], "db": "postgresql+psycopg:///xmr_v1_fixture", "created": "2026-12-02T00:52:55+00:00", "last_run": {"added": 12, "updated": 0, "moved": 0, "removed": 0, "unchanged": 0, "counts": {"audio": 2, "image": 6, "text": 4}, "interrupted": false, "seconds": 0.171, "index": "/tmp/v1fixture/postgres", "skipped": 0, "finished": "2026-12-02T00:52:55+00:00"}}');


--
-- Name: items_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.items_id_seq', 1, false);


--
-- Name: items items_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.items
    ADD CONSTRAINT items_pkey PRIMARY KEY (id);


--
-- Name: meta meta_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.meta
    ADD CONSTRAINT meta_pkey PRIMARY KEY (key);


--
-- Name: items uq_items_path_line; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.items
    ADD CONSTRAINT uq_items_path_line UNIQUE (path, line);


--
-- Name: ix_items_hash; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_items_hash ON public.items USING btree (content_hash);


--
-- Name: ix_items_modality_status; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_items_modality_status ON public.items USING btree (modality, status);


--
-- PostgreSQL database dump complete
--

\unrestrict NZURtba64wSexFrYKIXYXzwdl4wfsaPeE4jAU95QzsCtiTMCr25F1tCH4sWqfhy

