-- The operators' Inbound page lists one kind of message newest first.
CREATE INDEX inbound_messages_kind ON inbound_messages (kind, id);
