-- Recalculating levels (staff, /admin/levels/recalculate): who would move, which way, and
-- whether their level was set by hand or changed within the cooldown. The preview and
-- the batches that move members read the same candidates.
create function recalculation_candidates(p_recent_after timestamptz)
returns table (user_id bigint, member_code text, total_spent numeric, from_id integer,
               to_id integer, up boolean, manual boolean, recent boolean)
language sql stable as $$
    select p.user_id, p.member_code, p.total_spent, p.level_id, t.id,
           t.level_order > lo.level_order,
           coalesce(last.change_reason = 'manual', false),
           coalesce(p.last_level_change_at > p_recent_after, false)
      from member_profiles p
      join member_levels lo on lo.id = p.level_id
     cross join lateral (select l.id, l.level_order from member_levels l
                          where l.is_active and l.min_points <= p.total_spent
                          order by l.level_order desc limit 1) t
      left join lateral (select r.change_reason from level_change_records r
                          where r.user_id = p.user_id order by r.id desc limit 1) last on true
     where t.id <> p.level_id
$$;
