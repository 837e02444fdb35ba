-- consume_fifo, reading the FIFO index in ordered chunks. A FOR loop over the whole
-- "order by expires_at, id" query was planned as a bitmap scan plus a sort of every live
-- batch (23 ms at 10k batches for a use that touches one); with a LIMIT the planner walks
-- point_batches_fifo_idx in order and reads only what the amount consumes.
create or replace function consume_fifo(
    p_user bigint, p_points bigint, p_now timestamptz, p_tx bigint, p_first_batch bigint
) returns bigint
language plpgsql as $$
declare
    remaining bigint := p_points;
    take bigint;
    b record;
    last_expiry timestamptz := '-infinity';
    last_id bigint := 0;
    seen integer;
begin
    if p_first_batch is not null and remaining > 0 then
        select id, available_points into b
          from point_batches
         where id = p_first_batch and user_id = p_user
           and available_points > 0 and expires_at > p_now;
        if found then
            take := least(b.available_points, remaining);
            update point_batches set available_points = available_points - take where id = b.id;
            insert into batch_deductions (batch_id, transaction_id, points, created_at)
                 values (b.id, p_tx, take, p_now);
            remaining := remaining - take;
        end if;
    end if;
    while remaining > 0 loop
        seen := 0;
        for b in select id, available_points, expires_at
                   from point_batches
                  where user_id = p_user and available_points > 0 and expires_at > p_now
                    and (expires_at, id) > (last_expiry, last_id)
                  order by expires_at, id
                  limit 32
        loop
            seen := seen + 1;
            last_expiry := b.expires_at;
            last_id := b.id;
            take := least(b.available_points, remaining);
            update point_batches set available_points = available_points - take where id = b.id;
            insert into batch_deductions (batch_id, transaction_id, points, created_at)
                 values (b.id, p_tx, take, p_now);
            remaining := remaining - take;
            exit when remaining = 0;
        end loop;
        exit when seen = 0;
    end loop;
    return p_points - remaining;
end;
$$;
