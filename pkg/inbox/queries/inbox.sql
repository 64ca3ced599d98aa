-- name: InboxInsert :execrows
-- InboxInsert claims an event for a consumer inside the transaction that
-- applies its effect. 0 rows: an earlier delivery's transaction committed
-- the effect already. A concurrent delivery of the same event blocks here on
-- the primary key until the first transaction ends, then sees its row.
INSERT INTO inbox (consumer, event_id, subject)
VALUES (@consumer, @event_id, @subject)
ON CONFLICT (consumer, event_id) DO NOTHING;

-- name: DeadLetterInsert :execrows
-- DeadLetterInsert parks an event the consumer gave up on, with what an
-- operator needs to read and replay it. Parking the same event again (its
-- Term was lost and it came back) keeps the first row.
INSERT INTO dead_letters (consumer, event_id, subject, headers, payload, reason, deliveries)
VALUES (@consumer, @event_id, @subject, @headers, @payload, @reason, @deliveries)
ON CONFLICT (consumer, event_id) DO NOTHING;
