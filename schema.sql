-- Email Auto-Reply Orchestrator: database schema.
--
-- Idempotent: safe on a fresh database, on one where the Email Monitor already
-- created processed_emails, and on one holding the deployed orchestrator's
-- workflow_state / workflow_audit_log (upgraded in place, no row lost).
-- Apply with `orchestrator db init` (which runs it in one transaction under an
-- advisory lock, so workers starting together do not race) or `psql -f`.

-- ---------------------------------------------------------------------------
-- processed_emails: owned by the Email Monitor (docs/contracts.md §1). Created here
-- only when missing, for development and tests. The monitor writes 'pending';
-- the orchestrator writes orchestrating / sent / ignored / failed / timeout.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS processed_emails (
    id              SERIAL PRIMARY KEY,
    message_id      VARCHAR(255) UNIQUE NOT NULL,
    subject         TEXT,
    from_address    VARCHAR(255) NOT NULL,
    to_addresses    TEXT[],
    received_at     TIMESTAMPTZ NOT NULL,
    processed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    status          VARCHAR(50) NOT NULL DEFAULT 'pending',
    reply_draft     TEXT,
    error_message   TEXT,
    thread_id       VARCHAR(255),
    in_reply_to     VARCHAR(255),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE processed_emails ADD COLUMN IF NOT EXISTS body_text TEXT;
ALTER TABLE processed_emails ADD COLUMN IF NOT EXISTS body_html TEXT;

-- The poller's sweep: pending emails, oldest first.
CREATE INDEX IF NOT EXISTS processed_emails_pending_idx
    ON processed_emails (received_at, id) WHERE status = 'pending';

-- ---------------------------------------------------------------------------
-- workflow_state: one row per email the orchestrator took on. A superset of
-- the deployed service's columns. Every change of current_state is a
-- compare-and-set (UPDATE ... WHERE current_state = expected) paired with a
-- workflow_audit_log row in the same transaction.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS workflow_state (
    id                      SERIAL PRIMARY KEY,
    message_id              VARCHAR(255) NOT NULL UNIQUE
                            REFERENCES processed_emails (message_id) ON DELETE CASCADE,
    email_subject           TEXT,
    email_from              VARCHAR(255),
    email_to                TEXT,
    email_body_preview      TEXT,
    current_state           VARCHAR(50) NOT NULL DEFAULT 'pending',
    previous_state          VARCHAR(50),
    ai_reply_text           TEXT,
    ai_reply_generated_at   TIMESTAMPTZ,
    sms_message_id          VARCHAR(255),
    sms_sent_at             TIMESTAMPTZ,
    sms_phone_number        VARCHAR(32),
    user_command            VARCHAR(50),
    user_edit_instructions  TEXT,
    user_responded_at       TIMESTAMPTZ,
    edit_iteration          INTEGER NOT NULL DEFAULT 0,
    reply_sent_at           TIMESTAMPTZ,
    reply_message_id        VARCHAR(255),
    error_message           TEXT,
    retry_count             INTEGER NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    timeout_at              TIMESTAMPTZ
);

-- Columns this service adds to the deployed table (ADD ... IF NOT EXISTS keeps
-- an upgrade in place).
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS email_received_at TIMESTAMPTZ;
-- Every (instructions, draft) pair so far: the generator is stateless, so each
-- regeneration is sent the whole history.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS edit_history JSONB NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS ai_draft_id VARCHAR(64);
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS ai_model_version VARCHAR(100);
-- The stage a failed workflow failed in (draft / notify / send), for retries.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS failed_stage VARCHAR(20);
-- Set, with reply_message_id, before the SMTP call: a workflow found in
-- user_approved with this set crashed mid-send and must not be resent blindly.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS send_attempted_at TIMESTAMPTZ;
-- When the one reminder SMS for the draft on the phone went out (REMINDER_AFTER).
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS reminded_at TIMESTAMPTZ;
-- Parked by a peer outage that outlasted the in-call retries: the workflow
-- stays in its state and the housekeeping sweep sets its stage going again at
-- next_attempt_at (NULL while that try is in flight), until RETRY_DEADLINE
-- after parked_since. Any transition clears these.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS park_stage VARCHAR(20);
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS park_peer VARCHAR(50);
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS park_reason TEXT;
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS parked_since TIMESTAMPTZ;
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS park_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMPTZ;
-- A draft being generated is leased by one worker's generation pool until
-- lease_until (renewed while the call runs); a crashed worker's lease lapses
-- and another pool takes the draft. Any transition clears it.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ;
-- The first draft, kept when edits replace ai_reply_text (edit_history holds
-- each later one with the instructions that produced it).
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS ai_first_draft TEXT;
-- The workflow's W3C trace id, begun as the email is picked up: every record
-- written for the workflow carries it in its traceparent header.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS trace_id CHAR(32)
    DEFAULT replace(gen_random_uuid()::text, '-', '');

-- The draft's short code on the phone (docs/design.md, "Every answer names
-- its draft"): set when the workflow starts, unique among the person's open
-- workflows (the index is below, with person_id), cleared when it reaches a
-- decision (so the code can be given again).
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS draft_code VARCHAR(8);
-- When the draft now held was put on the phone (its presentation began): an
-- answer written before it was meant for something else and is not applied.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS presented_at TIMESTAMPTZ;
-- The person asked (by its code) to see this draft, which waits for the phone:
-- it is texted next, even while another draft is on the phone.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS present_requested_at TIMESTAMPTZ;

-- The deployed service may have used timestamps without time zone; they held
-- UTC. Convert in place so every timestamp is absolute.
DO $$
DECLARE col record;
BEGIN
    FOR col IN
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema()
          AND table_name IN ('workflow_state', 'workflow_audit_log')
          AND data_type = 'timestamp without time zone'
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE TIMESTAMPTZ USING %I AT TIME ZONE ''UTC''',
                       col.table_name, col.column_name, col.column_name);
    END LOOP;
END $$;

CREATE INDEX IF NOT EXISTS workflow_state_state_idx ON workflow_state (current_state, created_at);
CREATE INDEX IF NOT EXISTS workflow_state_timeout_idx
    ON workflow_state (timeout_at) WHERE current_state = 'awaiting_user';
CREATE INDEX IF NOT EXISTS workflow_state_created_idx ON workflow_state (created_at);
CREATE INDEX IF NOT EXISTS workflow_state_parked_idx
    ON workflow_state (next_attempt_at) WHERE park_peer IS NOT NULL;
-- The generation lease's order, VIP first since issue 20, each person's since
-- issue 19: workflow_state_lease_idx below (after the person_id column); the
-- older workflow_state_generating_idx and workflow_state_ready_idx are dropped there.

-- ---------------------------------------------------------------------------
-- workflow_audit_log: every won transition, in order (id is monotonic).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS workflow_audit_log (
    id                  BIGSERIAL PRIMARY KEY,
    message_id          VARCHAR(255) NOT NULL
                        REFERENCES processed_emails (message_id) ON DELETE CASCADE,
    from_state          VARCHAR(50),
    to_state            VARCHAR(50) NOT NULL,
    transition_reason   TEXT,
    error_details       TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workflow_audit_log_message_idx ON workflow_audit_log (message_id, id);

-- ---------------------------------------------------------------------------
-- inbound_sms: every SMS the webhook accepted, keyed by the gateway's
-- payload.messageId, so a redelivered webhook is recognised and dropped
-- (INSERT ... ON CONFLICT DO NOTHING). handled_at is set by the command agent
-- in the same transaction as the command's effect: a redelivered Kafka
-- message finds it set and does nothing.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS inbound_sms (
    sms_id          VARCHAR(255) PRIMARY KEY,
    phone_number    VARCHAR(40) NOT NULL,  -- as the gateway sent it (normalised), ours or not
    body            TEXT NOT NULL,
    received_at     TIMESTAMPTZ,
    accepted_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    handled_at      TIMESTAMPTZ,
    outcome         VARCHAR(50),
    message_id      VARCHAR(255)
);

-- ---------------------------------------------------------------------------
-- phone_conversation: the one draft on the person's phone. Commands carry no
-- reference, so only the most recently presented draft may be answered; the
-- next waiting draft is presented when this one reaches a decision. The row
-- lock (SELECT ... FOR UPDATE) serialises presenters across workers.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS phone_conversation (
    phone_number    VARCHAR(40) PRIMARY KEY,
    message_id      VARCHAR(255) REFERENCES processed_emails (message_id) ON DELETE SET NULL,
    presented_at    TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- peer_outage: a peer that parked at least one workflow. The row is made by
-- the first park of an outage (INSERT ... ON CONFLICT DO NOTHING), which is
-- what texts the person once; the sweep removes it when nothing is parked on
-- that peer any more.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS peer_outage (
    peer            VARCHAR(50) PRIMARY KEY,
    since           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- kafka_outbox: messages to publish, written in the same transaction as the
-- state change that causes them (transactional outbox). The relay publishes
-- them in id order with an idempotent producer, then deletes them, so a crash
-- between a commit and a publish loses nothing. topic is the logical name,
-- without KAFKA_TOPIC_PREFIX.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS kafka_outbox (
    id              BIGSERIAL PRIMARY KEY,
    topic           VARCHAR(100) NOT NULL,
    message_key     TEXT,
    payload         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The CloudEvents id of the record (ce_id): made with the row, so a batch
-- published again after a crash carries the same ids and consumers can drop
-- the duplicates. trace_id is the trace its traceparent header continues.
ALTER TABLE kafka_outbox ADD COLUMN IF NOT EXISTS event_id UUID NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE kafka_outbox ADD COLUMN IF NOT EXISTS trace_id CHAR(32);
-- A dead letter keeps another record's bytes as they were (which need not be
-- text), in raw_key / raw_value instead of message_key / payload, and says
-- why in headers (name -> value).
ALTER TABLE kafka_outbox ADD COLUMN IF NOT EXISTS raw_key BYTEA;
ALTER TABLE kafka_outbox ADD COLUMN IF NOT EXISTS raw_value BYTEA;
ALTER TABLE kafka_outbox ADD COLUMN IF NOT EXISTS headers JSONB;
ALTER TABLE kafka_outbox ALTER COLUMN payload DROP NOT NULL;

-- ---------------------------------------------------------------------------
-- dead_letter_log: what was dead-lettered, for the dashboard (the records
-- themselves, with their bytes, are on the deadletter topic). Written in the
-- same transaction as the dead letter's outbox row.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS dead_letter_log (
    id              BIGSERIAL PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    source_topic    VARCHAR(100) NOT NULL,
    record_key      TEXT,
    stage           VARCHAR(20) NOT NULL,
    kind            VARCHAR(20) NOT NULL,
    attempts        INTEGER NOT NULL,
    error_class     VARCHAR(200) NOT NULL,
    error_message   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letter_log_at_idx ON dead_letter_log (at DESC);

-- ---------------------------------------------------------------------------
-- Instant wake-ups: a new pending email wakes the poller, a new outbox row
-- wakes the relay. The sweep every POLL_INTERVAL covers anything missed.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION orchestrator_notify_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orchestrator_pending_email', NEW.message_id);
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS orchestrator_pending_email ON processed_emails;
CREATE TRIGGER orchestrator_pending_email
    AFTER INSERT OR UPDATE OF status ON processed_emails
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION orchestrator_notify_pending();

CREATE OR REPLACE FUNCTION orchestrator_notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orchestrator_outbox', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS orchestrator_outbox ON kafka_outbox;
CREATE TRIGGER orchestrator_outbox
    AFTER INSERT ON kafka_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_notify_outbox();

-- A draft to generate wakes the generation pools.
CREATE OR REPLACE FUNCTION orchestrator_notify_generate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orchestrator_generate', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS orchestrator_generate ON workflow_state;
CREATE TRIGGER orchestrator_generate
    AFTER UPDATE OF current_state ON workflow_state
    FOR EACH ROW WHEN (NEW.current_state = 'ai_generating' AND OLD.current_state <> 'ai_generating')
    EXECUTE FUNCTION orchestrator_notify_generate();

-- ---------------------------------------------------------------------------
-- Hostile records (docs/topics.md, "Dead letters"). An outbox row Kafka
-- refuses for good (too large, not allowed, invalid) is set aside by the relay
-- into dead_letter_log (kind 'unpublishable'), which then keeps the record's
-- bytes as they would have been published, since Kafka cannot hold them.
-- ---------------------------------------------------------------------------
ALTER TABLE dead_letter_log ADD COLUMN IF NOT EXISTS raw_key BYTEA;
ALTER TABLE dead_letter_log ADD COLUMN IF NOT EXISTS raw_value BYTEA;
-- When the sweep last set going again a workflow whose message was lost
-- (pending, user_edit_requested, user_approved past STALLED_GRACE): one
-- nudge per grace period, never one per sweep.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS redriven_at TIMESTAMPTZ;

-- ---------------------------------------------------------------------------
-- Delivery reports (docs/contracts.md §3, docs/design.md "Side effects happen
-- once"): every sms:sent / sms:delivered / sms:failed the gateway posts, once
-- per SMS and status (a redelivered report finds its row), with the workflow
-- whose draft SMS it reports (NULL for an SMS that is not a draft, or until
-- the draft's id is recorded: a report can come before /sms/send's answer is).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS sms_delivery_report (
    sms_message_id  VARCHAR(255) NOT NULL,
    status          VARCHAR(20) NOT NULL,
    reported_at     TIMESTAMPTZ,
    reason          TEXT,
    message_id      VARCHAR(255),
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sms_message_id, status)
);
CREATE INDEX IF NOT EXISTS sms_delivery_report_workflow ON sms_delivery_report (message_id)
    WHERE message_id IS NOT NULL;
-- What the gateway last said of the draft SMS now recorded on the workflow
-- (sms_message_id): sent, delivered or failed, the gateway's time of it, and
-- a failure's reason.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS sms_delivery_status VARCHAR(20);
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS sms_delivery_at TIMESTAMPTZ;
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS sms_delivery_error TEXT;
CREATE INDEX IF NOT EXISTS workflow_state_sms_message_id ON workflow_state (sms_message_id)
    WHERE sms_message_id IS NOT NULL;

-- `all 3` asks for a confirmation: the drafts it would ignore, until when a
-- `yes` confirms it (docs/contracts.md §5).
ALTER TABLE phone_conversation ADD COLUMN IF NOT EXISTS confirm_ids TEXT[];
ALTER TABLE phone_conversation ADD COLUMN IF NOT EXISTS confirm_until TIMESTAMPTZ;
-- When it was asked: a `yes` or `no` a while later still answers the question
-- (it never acts on a draft), even once the minute is over.
ALTER TABLE phone_conversation ADD COLUMN IF NOT EXISTS confirm_asked_at TIMESTAMPTZ;

-- A newer email of a thread supersedes the open draft of an older one
-- (docs/design.md, "A newer email supersedes"): the older workflow names the
-- newer email here, and the newer draft is written with the older emails read
-- again through it. The thread lookup reads processed_emails.thread_id.
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS superseded_by VARCHAR(255);
CREATE INDEX IF NOT EXISTS workflow_state_superseded_by_idx ON workflow_state (superseded_by)
    WHERE superseded_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS processed_emails_thread_idx ON processed_emails (thread_id)
    WHERE thread_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Senders who come first (docs/design.md, "Senders who come first"). An
-- email from a sender matching VIP_SENDERS or a pattern in vip_senders (marked
-- on the dashboard) starts with priority 1; drafts are generated and put on
-- the phone highest priority first, then oldest email first (READY_FIRST in
-- streams/storage/base.py), and the generation lease reads that order, each
-- person's, from workflow_state_lease_idx (below, with the people).
-- ---------------------------------------------------------------------------
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS priority SMALLINT NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS vip_senders (
    pattern     VARCHAR(254) PRIMARY KEY,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
DROP INDEX IF EXISTS workflow_state_generating_idx;
DROP INDEX IF EXISTS workflow_state_ready_idx;  -- one order for everyone: now each person's (below)

-- ---------------------------------------------------------------------------
-- It learns from you (docs/design.md, "It learns from you"). Every edit
-- instruction and every reply written by hand is evidence, kept with its
-- sender (the address, lower case) and domain; once an instruction is repeated
-- across emails (LESSON_SENDER_MIN, LESSON_DOMAIN_MIN, LESSON_EVERYONE_MIN) it
-- becomes a lesson, or at once by `remember ...`. A lesson is for one sender
-- (key = the address), one domain (key = the domain) or everyone (key NULL);
-- the person switches it off (`forget`, the dashboard) or deletes it.
-- workflow_state.lesson_ids: the lessons the draft was written with.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS lesson_evidence (
    id              BIGSERIAL PRIMARY KEY,
    message_id      VARCHAR(255) NOT NULL,
    sender          VARCHAR(320) NOT NULL,
    domain          VARCHAR(255) NOT NULL,
    kind            VARCHAR(10) NOT NULL DEFAULT 'edit' CHECK (kind IN ('edit', 'hand')),
    instruction     TEXT NOT NULL,
    normalised      TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (message_id, normalised)
);
CREATE TABLE IF NOT EXISTS lessons (
    id                  BIGSERIAL PRIMARY KEY,
    scope               VARCHAR(10) NOT NULL CHECK (scope IN ('sender', 'domain', 'everyone')),
    key                 VARCHAR(320),
    text                TEXT NOT NULL,
    enabled             BOOLEAN NOT NULL DEFAULT TRUE,
    source              VARCHAR(12) NOT NULL DEFAULT 'learnt' CHECK (source IN ('learnt', 'remembered')),
    times_applied       INTEGER NOT NULL DEFAULT 0,
    times_edited_after  INTEGER NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((scope = 'everyone') = (key IS NULL))
);
CREATE INDEX IF NOT EXISTS lessons_key_idx ON lessons (scope, key);
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS lesson_ids BIGINT[];

-- ---------------------------------------------------------------------------
-- Send later (docs/design.md, "Send later"): `1 at 9:00` approves the reply
-- and keeps it in user_approved until send_at; the sweep then queues its
-- replies.approved once, marking send_released_at in the same transaction.
-- ---------------------------------------------------------------------------
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS send_at TIMESTAMPTZ;
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS send_released_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS workflow_state_send_at_idx ON workflow_state (send_at)
    WHERE send_at IS NOT NULL AND send_released_at IS NULL;

-- How many older drafts of its thread a newer email closed: only its
-- generations read the earlier emails (docs/design.md, "A newer email supersedes").
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS supersedes INTEGER NOT NULL DEFAULT 0;

-- The notify stage looks for a draft the person asked for by code at every
-- presentation: rare rows in a large table, so a partial index of their own.
CREATE INDEX IF NOT EXISTS workflow_state_present_requested_idx
    ON workflow_state (present_requested_at) WHERE present_requested_at IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Many people on one deployment (docs/design.md, "Many people"). A person has
-- a phone (E.164, unique) and the mailbox addresses they answer from (unique
-- across people, in person_addresses); every other field left NULL is the
-- worker's setting. Passwords are Fernet tokens under PEOPLE_KEYS, never clear.
-- workflow_state.person_id: whose email it is; 0 is the default person (the
-- worker's single-person settings: YOUR_PHONE_NUMBER, EMAIL_ADDRESS, ...),
-- NULL an email that belongs to nobody (state 'unrouted').
-- processed_emails.mailbox: set by a monitor serving several mailboxes, the
-- address of the mailbox that received the email (docs/contracts.md §1).
-- ---------------------------------------------------------------------------
ALTER TABLE processed_emails ADD COLUMN IF NOT EXISTS mailbox VARCHAR(320);
CREATE TABLE IF NOT EXISTS people (
    id                  SERIAL PRIMARY KEY,
    name                VARCHAR(200) NOT NULL,
    phone               VARCHAR(32) NOT NULL UNIQUE,
    smtp_server         VARCHAR(255),
    smtp_port           INTEGER CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security       VARCHAR(10) CHECK (smtp_security IN ('ssl', 'starttls', 'plain')),
    smtp_login          VARCHAR(320),
    smtp_password       TEXT,
    imap_server         VARCHAR(255),
    imap_port           INTEGER CHECK (imap_port BETWEEN 1 AND 65535),
    imap_login          VARCHAR(320),
    imap_password       TEXT,
    imap_sent_folder    VARCHAR(255),
    timezone            VARCHAR(64),
    quiet_hours         VARCHAR(40),
    reminder_after      DOUBLE PRECISION CHECK (reminder_after >= 0),
    skip_senders        TEXT,
    tone                VARCHAR(20),
    max_length          INTEGER CHECK (max_length > 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS person_addresses (
    address     VARCHAR(320) PRIMARY KEY,  -- lower case
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    position    SMALLINT NOT NULL DEFAULT 0  -- 0: the address replies are sent from
);
CREATE INDEX IF NOT EXISTS person_addresses_person_idx ON person_addresses (person_id, position);
ALTER TABLE workflow_state ADD COLUMN IF NOT EXISTS person_id INTEGER DEFAULT 0;
CREATE INDEX IF NOT EXISTS workflow_state_person_idx ON workflow_state (person_id, current_state);
-- The generation lease (docs/design.md, "Fair scheduling"): each person's next
-- drafts in their order, VIP first then oldest, read from the index a few at a
-- time however long their backlog; and the drafts being generated now, counted
-- per person, read from the second.
CREATE INDEX IF NOT EXISTS workflow_state_lease_idx
    ON workflow_state (person_id, priority DESC, email_received_at, created_at, id)
    WHERE current_state = 'ai_generating';
CREATE INDEX IF NOT EXISTS workflow_state_leased_idx
    ON workflow_state (lease_until) WHERE current_state = 'ai_generating';
-- Settings the person may have of their own since people were added (NULL: the worker's).
ALTER TABLE people ADD COLUMN IF NOT EXISTS vip_senders TEXT;
ALTER TABLE people ADD COLUMN IF NOT EXISTS phone_mode VARCHAR(8);
ALTER TABLE people ADD COLUMN IF NOT EXISTS sms_format VARCHAR(12);
-- Codes are each person's own: unique among one person's open drafts, so they
-- stay short however many people share the deployment. (Until many people,
-- they were unique across the deployment: that index is dropped.)
DROP INDEX IF EXISTS workflow_state_draft_code_idx;
CREATE UNIQUE INDEX IF NOT EXISTS workflow_state_person_code_idx
    ON workflow_state (person_id, draft_code) WHERE draft_code IS NOT NULL;
-- The lessons a person's drafts learnt from are theirs alone.
ALTER TABLE lesson_evidence ADD COLUMN IF NOT EXISTS person_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lessons ADD COLUMN IF NOT EXISTS person_id INTEGER NOT NULL DEFAULT 0;
-- An outage texts each person it holds work of once (peer_outage stays the
-- outage itself; this is who was told).
CREATE TABLE IF NOT EXISTS peer_outage_told (
    peer        VARCHAR(50) NOT NULL,
    person_id   INTEGER NOT NULL,
    PRIMARY KEY (peer, person_id)
);
-- Dashboard sign-in by a code texted to the person's phone: single use,
-- short-lived (the code is kept only as a hash), rate limited per phone.
CREATE TABLE IF NOT EXISTS sign_in_codes (
    id          BIGSERIAL PRIMARY KEY,
    person_id   INTEGER NOT NULL,
    code_hash   CHAR(64) NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sign_in_codes_person_idx ON sign_in_codes (person_id, created_at DESC);
