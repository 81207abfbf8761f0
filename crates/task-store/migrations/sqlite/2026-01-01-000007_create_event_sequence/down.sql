DROP TABLE event_sequence;
