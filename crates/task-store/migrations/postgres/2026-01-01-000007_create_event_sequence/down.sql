DROP SEQUENCE event_sequence;
