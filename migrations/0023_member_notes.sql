-- Staff notes on a member (issue 13 §5): what customer service wants the next colleague to
-- know. Kept with their author and time; never shown to the member.
create table member_notes (
    id             bigint generated always as identity primary key,
    user_id        bigint not null references member_profiles (user_id),
    author_user_id bigint references users (id),
    body           text not null check (length(btrim(body)) between 1 and 1000),
    created_at     timestamptz not null
);
create index member_notes_user_idx on member_notes (user_id, id desc);
