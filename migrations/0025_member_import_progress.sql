-- Imports started from the staff pages (issue 13 §5): followed on their own page while
-- they run. An import now goes through reading → checking → making and ends done,
-- refused (all or nothing, and a row was bad) or failed (the file could not be used, or
-- the portal stopped while it ran: nothing was imported). Its bad lines are kept for the
-- page (the first 1000), and who started it from which file of what size.
alter table member_imports drop constraint member_imports_status_check;
alter table member_imports add constraint member_imports_status_check
    check (status in ('reading', 'checking', 'making', 'done', 'refused', 'failed'));
alter table member_imports
    add column actor      bigint references users (id),
    add column file_bytes bigint,
    add column bytes_read bigint not null default 0,
    add column errors     jsonb not null default '[]',
    add column failure    text;
