-- Whether a failed job's agent said trying again may succeed (1/0; NULL unless Failed), so
-- controllers can requeue without opening the result.
ALTER TABLE jobs ADD COLUMN outcome_retryable BIGINT;
