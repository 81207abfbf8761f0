-- Additive and nullable: the original service's code keeps working against this schema.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS due_date TIMESTAMPTZ NULL;
