-- The source of the CloudEvents `sequence` extension: every mutation takes one value inside its transaction, after
-- it has locked the rows it changes, so for one task the values follow the commit order. Gaps (rolled-back
-- transactions) are harmless; a consumer only compares values.
-- MAXVALUE: a value is shifted left by 20 bits to number the events of its transaction, within 64 bits.
CREATE SEQUENCE event_sequence AS BIGINT MINVALUE 1 MAXVALUE 17592186044415;
