-- Member codes: the day's sequence is at least five digits and grows a digit past 99999
-- (M2025091899999, then M20250918100000), so the 100,000th sign-up of a day is not refused.
alter table member_code_counters drop constraint member_code_counters_last_seq_check;
alter table member_code_counters add constraint member_code_counters_last_seq_check check (last_seq >= 1);
