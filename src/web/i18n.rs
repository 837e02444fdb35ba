//! UI text in Simplified Chinese and English. Level names and other data show as entered.

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        if s.starts_with("zh") {
            Some(Lang::Zh)
        } else if s.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The best of zh and en by an `Accept-Language` header's q-values; Chinese when
    /// neither is asked for.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("");
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }

    /// The text of a key made at run time (an audit action, say), if the table has it.
    pub fn try_t(self, key: &str) -> Option<&'static str> {
        TEXT.get(key).map(|(zh, en)| match self {
            Lang::Zh => *zh,
            Lang::En => *en,
        })
    }

    pub fn t(self, key: &str) -> &'static str {
        match TEXT.get(key) {
            Some((zh, en)) => match self {
                Lang::Zh => zh,
                Lang::En => en,
            },
            None => {
                tracing::warn!(key, "missing UI text");
                "?"
            }
        }
    }
}

/// A UI text as a template writes it: one of [`ENTRIES`], none of which holds a character
/// HTML escapes (a test checks), so askama writes it as it is instead of escaping the
/// couple of dozen texts of every page byte by byte. Data (names, emails) is still escaped.
#[derive(Debug, PartialEq, Eq)]
pub struct Text(pub &'static str);

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl askama::filters::HtmlSafe for Text {}

/// Written straight into the page, not through `fmt` (a `Display` write costs more than
/// the copy of a short text).
impl askama::FastWritable for Text {
    fn write_into(
        &self,
        dest: &mut dyn std::fmt::Write,
        _: &dyn askama::Values,
    ) -> askama::Result<()> {
        Ok(dest.write_str(self.0)?)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0.to_owned()
    }
}

/// A page looks up dozens of texts; the keys are this program's literals, so a fast
/// hasher (foldhash) rather than SipHash.
type TextMap = HashMap<&'static str, (&'static str, &'static str), foldhash::fast::FixedState>;

static TEXT: LazyLock<TextMap> =
    LazyLock::new(|| ENTRIES.iter().map(|(k, zh, en)| (*k, (*zh, *en))).collect());

/// (key, 简体中文, English)
pub const ENTRIES: &[(&str, &str, &str)] = &[
    ("app.name", "会员中心", "Member Portal"),
    ("nav.profile", "我的会员", "My membership"),
    ("nav.points", "积分明细", "Points"),
    ("nav.upgrade", "升级进度", "Upgrade"),
    ("nav.notifications", "消息", "Messages"),
    ("nav.admin", "管理后台", "Admin"),
    ("nav.logout", "退出登录", "Log out"),
    ("nav.login", "登录", "Log in"),
    ("nav.register", "注册", "Sign up"),
    ("nav.language", "语言", "Language"),
    ("nav.skip", "跳到主要内容", "Skip to main content"),
    ("login.title", "登录", "Log in"),
    ("login.email", "邮箱", "Email"),
    ("login.password", "密码", "Password"),
    ("login.submit", "登录", "Log in"),
    (
        "login.invalid",
        "邮箱或密码不正确。",
        "Email or password is incorrect.",
    ),
    (
        "login.throttled",
        "登录失败次数过多，请稍后再试（约 {minutes} 分钟）。",
        "Too many failed attempts. Try again in about {minutes} minutes.",
    ),
    ("login.no_account", "还没有账号？", "No account yet?"),
    (
        "login.expired",
        "登录已过期，请重新登录。",
        "Your session has ended. Please log in again.",
    ),
    ("register.title", "注册会员", "Become a member"),
    ("register.display_name", "昵称", "Display name"),
    (
        "register.password_hint",
        "至少 8 个字符",
        "At least 8 characters",
    ),
    ("register.confirm", "确认密码", "Confirm password"),
    (
        "register.mismatch",
        "两次输入的密码不一致。",
        "The passwords do not match.",
    ),
    (
        "register.taken",
        "该邮箱已注册。",
        "An account with this email already exists.",
    ),
    ("register.submit", "注册", "Sign up"),
    ("register.have_account", "已有账号？", "Already a member?"),
    (
        "error.field.email",
        "请输入有效的邮箱地址，例如 name@example.com。",
        "Enter an email address such as name@example.com.",
    ),
    (
        "error.field.display_name",
        "昵称需为 1 到 100 个字符。",
        "Display name must be 1 to 100 characters.",
    ),
    (
        "error.field.password",
        "密码需为 8 到 128 个字符。",
        "Password must be 8 to 128 characters.",
    ),
    ("profile.title", "我的会员", "My membership"),
    ("profile.member_code", "会员编号", "Member code"),
    ("profile.level", "会员等级", "Level"),
    ("profile.discount", "折扣", "Discount"),
    ("profile.no_discount", "无折扣", "No discount"),
    ("profile.multiplier", "积分倍率", "Points multiplier"),
    ("profile.benefits", "等级权益", "Benefits"),
    ("profile.balance", "可用积分", "Points available"),
    ("profile.total_spent", "累计消费", "Total spent"),
    ("profile.total_earned", "累计获得", "Earned"),
    ("profile.total_used", "累计使用", "Used"),
    ("profile.total_adjusted", "客服调整", "Adjusted by staff"),
    ("profile.total_reversed", "退货扣回", "Taken back (returns)"),
    (
        "profile.total_refunded",
        "取消抵扣退回",
        "Returned (cancelled checkouts)",
    ),
    ("profile.total_expired", "已过期", "Expired"),
    ("profile.expiring_soon", "即将过期", "Expiring soon"),
    (
        "profile.expiring_none",
        "30 天内没有即将过期的积分。",
        "No points expire in the next 30 days.",
    ),
    ("profile.expires_on", "到期", "expire on"),
    ("profile.next_level", "距离下一等级", "To the next level"),
    ("points.title", "积分明细", "Points history"),
    ("points.batches", "积分批次", "Points by batch"),
    ("points.batch_earned", "获得", "Earned"),
    ("points.batch_left", "剩余", "Left"),
    ("points.batch_expires", "到期时间", "Expires"),
    (
        "points.more_batches",
        "仅列出最先到期的批次，其余批次到期更晚。",
        "Only the batches that expire first are listed; the others expire later.",
    ),
    (
        "points.no_batches",
        "暂无可用积分。",
        "No points available.",
    ),
    ("points.filter", "类型", "Type"),
    ("points.filter_all", "全部", "All"),
    ("points.apply", "筛选", "Filter"),
    ("points.date", "时间", "Date"),
    ("points.type", "类型", "Type"),
    ("points.change", "变动", "Change"),
    ("points.balance", "余额", "Balance"),
    ("points.details", "说明", "Details"),
    ("points.load_more", "加载更多", "Load more"),
    ("points.empty", "暂无积分记录。", "No points activity yet."),
    ("points.unrecovered", "未能扣回", "not recovered"),
    ("type.earn", "获得", "Earned"),
    ("type.use", "使用", "Used"),
    ("type.expire", "过期", "Expired"),
    ("type.adjust", "调整", "Adjusted"),
    ("type.reverse", "退货扣回", "Reversed"),
    ("type.refund", "退回", "Refunded"),
    ("upgrade.title", "升级进度", "Upgrade progress"),
    ("upgrade.current", "当前等级", "Current level"),
    ("upgrade.next", "下一等级", "Next level"),
    ("upgrade.spent", "累计消费", "Spent so far"),
    ("upgrade.remaining", "还需消费", "Still to spend"),
    (
        "upgrade.top",
        "您已是最高等级。",
        "You are at the highest level.",
    ),
    ("upgrade.ladder", "等级一览", "All levels"),
    (
        "upgrade.spent_year",
        "本年度消费",
        "Spent this calendar year",
    ),
    (
        "upgrade.spent_months",
        "近 {n} 个月消费",
        "Spent in the last {n} months",
    ),
    (
        "upgrade.kept_until",
        "{level} 保级至 {date}。",
        "{level} is yours until {date}.",
    ),
    (
        "upgrade.manual_until",
        "{level} 由客服设定，保留至 {date}。",
        "{level} was set by customer service and is yours until {date}.",
    ),
    (
        "upgrade.keep_needed",
        "在 {date} 前再消费 ¥{amount} 即可保留 {level}；否则评审后将调整为 {lower}。",
        "Spend ¥{amount} more by {date} to keep {level}; otherwise you move to {lower} at the review.",
    ),
    (
        "upgrade.keep_done",
        "您已满足保级条件，{date} 评审后继续享有 {level}。",
        "You have qualified to keep {level} at the review after {date}.",
    ),
    (
        "upgrade.deferred",
        "您的升级将于 {date} 生效（距上次等级变动未满冷却期）。",
        "Your upgrade takes effect on {date} (your level changed recently; upgrades wait out the cooldown).",
    ),
    ("upgrade.threshold", "消费门槛", "Spend threshold"),
    ("upgrade.you", "当前", "You"),
    ("notifications.title", "消息", "Messages"),
    ("notifications.empty", "暂无消息。", "No messages."),
    ("notifications.mark_read", "标为已读", "Mark as read"),
    ("notifications.mark_all", "全部标为已读", "Mark all as read"),
    ("notifications.unread", "未读", "unread"),
    (
        "notify.level_upgraded",
        "恭喜！您已升级为 {level}。",
        "Congratulations! You are now {level}.",
    ),
    (
        "notify.level_will_downgrade",
        "{date} 前再消费 ¥{amount} 可保留 {level}，否则将调整为 {lower}。",
        "Spend ¥{amount} more by {date} to keep {level}; otherwise you move to {lower}.",
    ),
    (
        "notify.level_downgraded",
        "您的会员等级已调整为 {level}。",
        "Your level is now {level}.",
    ),
    (
        "notify.level_changed",
        "您的会员等级已调整为 {level}。",
        "Your level is now {level}.",
    ),
    (
        "notify.points_expiry_reminder",
        "您有 {points} 积分将于 {date} 起陆续过期。",
        "{points} points expire from {date}.",
    ),
    ("admin.dashboard", "概览", "Dashboard"),
    ("admin.levels", "等级设置", "Levels"),
    ("admin.members", "会员", "Members"),
    ("admin.audit", "操作日志", "Audit log"),
    ("admin.api_keys", "API 密钥", "API keys"),
    (
        "admin.members_per_level",
        "各等级会员数",
        "Members per level",
    ),
    (
        "admin.points_30d",
        "近 30 天积分",
        "Points over the last 30 days",
    ),
    ("admin.earned", "发放", "Earned"),
    ("admin.used", "使用", "Used"),
    ("admin.expired", "过期", "Expired"),
    ("admin.day", "日期", "Day"),
    ("admin.total", "合计", "Total"),
    ("admin.chart_table", "图表数据", "Chart data"),
    ("level.name", "等级名称", "Level name"),
    ("level.order", "等级顺序", "Order"),
    ("level.order_hint", "数字越大等级越高", "Higher is better"),
    ("level.min_points", "消费门槛", "Spend threshold"),
    ("level.discount_rate", "折扣率", "Discount rate"),
    (
        "level.discount_hint",
        "0.95 表示 9.5 折",
        "0.95 means 5% off",
    ),
    ("level.point_multiplier", "积分倍率", "Points multiplier"),
    ("level.benefits", "等级权益", "Benefits"),
    ("level.benefits_hint", "每行一项", "One per line"),
    ("level.active", "启用", "Active"),
    ("level.inactive", "已停用", "Inactive"),
    ("level.members", "会员数", "Members"),
    ("level.create", "新建等级", "New level"),
    ("level.save", "保存", "Save"),
    ("level.edit", "编辑", "Edit"),
    ("level.activate", "启用", "Activate"),
    ("level.deactivate", "停用", "Deactivate"),
    ("level.edit_title", "编辑等级", "Edit level"),
    (
        "level.whole_number",
        "请输入整数。",
        "Enter a whole number.",
    ),
    (
        "level.decimal",
        "请输入数字，例如 0.95。",
        "Enter a number such as 0.95.",
    ),
    (
        "level.in_use",
        "该等级仍有会员，无法停用。",
        "Members are still on this level; it cannot be deactivated.",
    ),
    ("recalc.title", "重新计算会员等级", "Recalculate levels"),
    (
        "recalc.intro",
        "按每位会员的累计消费，将其调整到可达到的最高启用等级。",
        "Puts every member on the highest active level their spend reaches.",
    ),
    ("recalc.from", "原等级", "From"),
    ("recalc.to", "新等级", "To"),
    (
        "recalc.none",
        "所有会员的等级都已正确。",
        "Every member is already on the right level.",
    ),
    ("recalc.apply", "确认调整", "Apply"),
    (
        "recalc.done",
        "已调整 {n} 位会员的等级。",
        "{n} members moved.",
    ),
    (
        "members.search",
        "按会员编号或邮箱搜索",
        "Search by member code or email",
    ),
    ("members.go", "搜索", "Search"),
    ("members.none", "没有找到会员。", "No members found."),
    ("members.code", "会员编号", "Member code"),
    ("members.email", "邮箱", "Email"),
    ("members.name", "昵称", "Name"),
    ("members.points", "积分", "Points"),
    ("member.adjust", "调整积分", "Adjust points"),
    (
        "member.adjust_points",
        "积分（负数为扣减）",
        "Points (negative to take away)",
    ),
    ("member.reason", "原因", "Reason"),
    ("member.set_level", "设置等级", "Set level"),
    ("admin.finance", "财务", "Finance"),
    ("keys.scopes", "权限范围", "Scopes"),
    (
        "keys.scope_earn",
        "建会员、发积分、退货扣回",
        "create members, earn, reverse",
    ),
    (
        "keys.scope_use",
        "使用积分、撤销使用",
        "use points, refund uses",
    ),
    ("keys.scope_read", "查询", "every read"),
    (
        "keys.scope_coupons",
        "兑换、核销与释放券",
        "redeem, validate, consume, release coupons",
    ),
    ("audit.field.scopes", "权限范围", "scopes"),
    ("staff.role", "角色", "Role"),
    (
        "staff.read_only",
        "您的角色为只读：可以查看，不能更改。",
        "Your role is read-only: you can look, not change anything.",
    ),
    ("staff.role_admin", "管理员", "Admin"),
    ("staff.role_operator", "运营", "Operator"),
    ("staff.role_viewer", "只读", "Viewer"),
    ("staff.set_role", "更改", "Change"),
    (
        "staff.done_role",
        "角色已更改，对方下一次操作即生效。",
        "Role changed; it applies from that account’s next request.",
    ),
    (
        "audit.action.staff.set_role",
        "更改员工角色",
        "Staff role changed",
    ),
    ("audit.field.role", "角色", "role"),
    ("grant.title", "批量发放积分", "Bulk grant"),
    ("grant.list_title", "批量发放记录", "Bulk grants"),
    (
        "grant.list_hint",
        "在会员列表中筛选会员，再向筛选出的全部会员发放积分。",
        "Filter the member list, then grant points to every member it finds.",
    ),
    ("grant.none", "尚无批量发放。", "No bulk grants yet."),
    (
        "grant.form_title",
        "向筛选出的会员发放积分",
        "Grant points to these members",
    ),
    (
        "grant.form_hint",
        "按当前筛选条件，向所有符合的会员（不止本页）各发放相同积分；发放前会请您确认人数。",
        "Every member the filter finds (not only this page) gets the same points; you confirm the number first.",
    ),
    ("grant.submit", "发放…", "Grant…"),
    ("grant.points_each", "每人积分", "Points each"),
    ("grant.members", "会员数", "Members"),
    ("grant.points_total", "合计积分", "Points in all"),
    ("grant.status", "状态", "Status"),
    ("grant.done", "已完成", "Done"),
    ("grant.running", "进行中", "Running"),
    (
        "grant.confirm_text",
        "确认向以下会员发放积分？每位会员只会获得一次。",
        "Grant these points? Each member gets them once.",
    ),
    ("grant.confirm_yes", "确认发放", "Grant the points"),
    (
        "grant.nobody",
        "当前筛选条件下没有会员。",
        "The filter finds no members.",
    ),
    (
        "grant.points_needed",
        "请填写每人积分（正整数）。",
        "Enter the points each member gets (a whole number above 0).",
    ),
    (
        "grant.reason_needed",
        "请填写发放原因。",
        "Enter the reason for the grant.",
    ),
    (
        "grant.in_progress",
        "正在发放：已完成 {n} / {of} 位会员…",
        "Granting: {n} of {of} members so far…",
    ),
    (
        "grant.finished",
        "已完成：{n} 位会员获得积分。",
        "Done: {n} members were granted the points.",
    ),
    (
        "notify.points_granted",
        "您获得了 {points} 积分：{reason}",
        "You were given {points} points: {reason}",
    ),
    (
        "audit.action.points.bulk_grant",
        "批量发放积分",
        "Bulk grant",
    ),
    (
        "audit.action.members.import",
        "导入会员",
        "Members imported",
    ),
    ("import.list_title", "导入会员", "Import members"),
    ("import.title", "会员导入", "Member import"),
    ("import.form_title", "上传 CSV 文件", "Upload a CSV file"),
    (
        "import.form_hint",
        "第一行写列名（任意顺序），至少 email 和 display_name；points 为期初积分，total_spent 为累计消费。默认整批导入：有任何错误行则一个也不导入。",
        "The first line names the columns (in any order), at least email and display_name; points is the opening balance, total_spent the spend so far. By default all or nothing: one bad row and nobody is imported.",
    ),
    ("import.file", "文件", "File"),
    ("import.max", "最大 {n} MB。", "Up to {n} MB."),
    (
        "import.skip",
        "跳过错误行，导入其余各行",
        "Skip bad rows and import the rest",
    ),
    ("import.submit", "上传并导入", "Upload and import"),
    ("import.uploading", "正在上传…", "Uploading…"),
    (
        "import.needs_script",
        "上传需要启用 JavaScript；也可在服务器上运行 member-portal import-members。",
        "Uploading needs JavaScript; or run member-portal import-members on the server.",
    ),
    ("import.recent", "最近的导入", "Recent imports"),
    ("import.none", "尚无导入。", "No imports yet."),
    ("import.rows", "读取行数", "Rows read"),
    ("import.bad", "错误行", "Bad rows"),
    ("import.imported", "已导入", "Imported"),
    ("import.cli", "命令行", "command line"),
    ("import.mode", "方式", "Mode"),
    (
        "import.mode.all_or_nothing",
        "整批导入（有错误则全部不导入）",
        "All or nothing",
    ),
    ("import.mode.skip_bad_rows", "跳过错误行", "Skip bad rows"),
    ("import.status.reading", "读取中", "Reading"),
    ("import.status.checking", "核对中", "Checking"),
    ("import.status.making", "创建会员中", "Creating members"),
    ("import.status.done", "已完成", "Done"),
    ("import.status.refused", "未导入", "Refused"),
    ("import.status.failed", "失败", "Failed"),
    (
        "import.says.reading",
        "正在读取文件：已读 {n} 行，其中 {bad} 行有误…",
        "Reading the file: {n} rows so far, {bad} of them bad…",
    ),
    (
        "import.says.checking",
        "已读完 {n} 行，正在与现有会员核对邮箱、外部编号和会员号…",
        "All {n} rows read; checking emails, external ids and member codes against existing members…",
    ),
    (
        "import.says.making",
        "正在创建会员及其期初积分（{n} 行，{bad} 行有误将跳过）…",
        "Creating the members and their opening balances ({n} rows; {bad} bad rows skipped)…",
    ),
    (
        "import.says.done",
        "已完成：导入 {made} 位会员（读取 {n} 行，{bad} 行有误）。",
        "Done: {made} members imported ({n} rows read, {bad} bad).",
    ),
    (
        "import.says.refused",
        "未导入任何会员：{bad} 行有误。请修正下列各行后重新上传，或选择跳过错误行。",
        "Nobody was imported: {bad} bad rows. Fix the lines below and upload again, or choose to skip bad rows.",
    ),
    (
        "import.says.failed",
        "导入失败，未导入任何会员。",
        "The import failed; nobody was imported.",
    ),
    ("import.bad_lines", "错误行", "Bad lines"),
    (
        "import.first_bad",
        "只列出前 {n} 行。",
        "Only the first {n} are listed.",
    ),
    ("import.line", "行号", "Line"),
    ("import.why", "问题", "What is wrong"),
    (
        "import.too_large",
        "文件超过 {n} MB。请拆分文件，或在服务器上运行 member-portal import-members。",
        "The file is larger than {n} MB. Split it, or run member-portal import-members on the server.",
    ),
    (
        "import.no_file",
        "请选择要上传的 CSV 文件。",
        "Choose a CSV file to upload.",
    ),
    (
        "import.broken",
        "上传未完成，请重试",
        "The upload did not arrive whole; try again",
    ),
    ("finance.liability", "积分负债", "Points owed"),
    ("finance.owed", "可用积分", "Owed (spendable)"),
    ("finance.pending", "待入账积分", "Pending"),
    ("finance.by_expiry", "按到期月份", "By expiry month"),
    ("finance.by_level", "按会员等级", "By level"),
    ("finance.expiry_month", "到期月份", "Expires in"),
    ("finance.points", "积分", "Points"),
    (
        "finance.nothing_owed",
        "目前没有未使用的积分。",
        "No points are owed.",
    ),
    ("finance.csv", "下载 CSV", "Download CSV"),
    (
        "finance.months",
        "近 12 个月积分流水",
        "Points by month (last 12 months)",
    ),
    (
        "finance.no_months",
        "近 12 个月没有积分交易。",
        "No points transactions in the last 12 months.",
    ),
    ("finance.month", "月份", "Month"),
    ("finance.issued", "发放", "Issued"),
    ("finance.redeemed", "兑换使用", "Redeemed"),
    ("finance.expired", "过期", "Expired"),
    ("finance.reversed", "退货扣回", "Reversed"),
    ("finance.adjusted", "客服调整", "Adjusted"),
    ("finance.breakage", "过期率", "Breakage"),
    ("finance.still_owed", "当月发放仍未用", "Issued, still owed"),
    (
        "finance.breakage_hint",
        "过期率：当月发放的积分中至今已过期的比例；“当月发放仍未用”为其中尚可使用或待入账的积分。",
        "Breakage: the share of the points issued in the month that has expired since; “issued, still owed” is what of them can still be spent or is pending.",
    ),
    ("finance.ledger", "导出积分流水", "Ledger export"),
    ("finance.from", "起始日期", "From"),
    ("finance.to", "截止日期（含）", "To (inclusive)"),
    (
        "finance.download",
        "下载流水 CSV",
        "Download the ledger (CSV)",
    ),
    (
        "finance.ledger_hint",
        "每笔积分交易一行，含会员编号；日期按营业时区，留空表示不限。",
        "One line per points transaction with the member code; days in the business time zone, empty for no limit.",
    ),
    ("member.note", "备注", "Note"),
    (
        "member.level_until",
        "保留至（可选）",
        "Keep until (optional)",
    ),
    (
        "member.level_until_hint",
        "到期后按消费评审，并提前通知会员；留空则长期保留。",
        "After this day the level is reviewed on spend, with notice to the member; empty keeps it for good.",
    ),
    ("member.level_history", "等级记录", "Level history"),
    ("member.batches", "积分批次", "Points batches"),
    ("member.notes", "客服备注", "Staff notes"),
    (
        "member.note_hint",
        "留给同事的备注（会员看不到）",
        "A note for colleagues (the member does not see it)",
    ),
    ("member.add_note", "添加备注", "Add note"),
    ("member.no_notes", "尚无备注。", "No notes yet."),
    ("member.done_note", "备注已添加。", "Note added."),
    ("member.coupons", "会员的券", "Coupons"),
    ("member.no_batches", "尚无积分批次。", "No batches yet."),
    (
        "member.pending_total",
        "待入账：{n} 积分",
        "Pending: {n} points",
    ),
    (
        "member.batch_pending",
        "待入账，{date} 起可用",
        "pending until {date}",
    ),
    ("member.batch_used", "已用完", "used up"),
    ("member.batch_expired", "已到期", "past its expiry"),
    ("member.batch_live", "可用", "available"),
    (
        "member.no_level_history",
        "尚无等级变动。",
        "No level changes yet.",
    ),
    ("member.level_change", "变动", "Change"),
    ("member.level_reason", "原因", "Reason"),
    (
        "member.level_kept_until",
        "当前等级保留至",
        "Level kept until",
    ),
    (
        "member.level_manual_until",
        "人工设定，保留至",
        "Set by hand, kept until",
    ),
    (
        "member.level_kept_forever",
        "当前等级长期有效。",
        "The level is kept for good.",
    ),
    (
        "member.level_manual_forever",
        "人工设定，长期有效。",
        "Set by hand, kept for good.",
    ),
    (
        "member.level_review_drop",
        "评审时将调整为 {lower}，除非再消费 ¥{amount}",
        "moves to {lower} at the review unless ¥{amount} more is spent",
    ),
    ("reason.auto_upgrade", "自动升级", "Upgrade"),
    ("reason.manual", "人工设定", "Set by hand"),
    ("reason.recalculate", "重新计算", "Recalculation"),
    ("reason.review", "保级评审", "Review"),
    ("member.ledger", "积分流水", "Ledger"),
    ("member.done", "已保存。", "Saved."),
    ("audit.when", "时间", "When"),
    ("audit.who", "操作人", "Who"),
    ("audit.action", "操作", "Action"),
    ("audit.target", "对象", "Target"),
    ("audit.details", "详情", "Details"),
    ("audit.older", "更早的记录", "Older entries"),
    ("audit.filter", "筛选", "Filter"),
    ("audit.any_action", "全部操作", "All actions"),
    ("audit.actor_email", "操作人邮箱", "Staff email"),
    ("audit.member_id", "会员 ID", "Member ID"),
    ("audit.none", "没有符合条件的记录。", "No entries match."),
    ("audit.action.points.adjust", "调整积分", "Points adjusted"),
    (
        "audit.action.member.set_level",
        "设置会员等级",
        "Member level set",
    ),
    (
        "audit.action.levels.recalculate",
        "重新计算等级",
        "Levels recalculated",
    ),
    ("audit.action.level.create", "新建等级", "Level created"),
    ("audit.action.level.update", "修改等级", "Level changed"),
    (
        "audit.action.api_key.create",
        "创建 API 密钥",
        "API key created",
    ),
    (
        "audit.action.api_key.revoke",
        "吊销 API 密钥",
        "API key revoked",
    ),
    (
        "audit.action.staff.create",
        "创建员工账号",
        "Staff account created",
    ),
    ("audit.target.member", "会员", "member"),
    ("audit.target.level", "等级", "level"),
    ("audit.target.bulk_grant", "批量发放", "bulk grant"),
    ("audit.target.import", "会员导入", "member import"),
    ("audit.field.rows_read", "读取行数", "rows read"),
    ("audit.field.rows_bad", "错误行数", "bad rows"),
    ("audit.field.imported", "导入会员", "members imported"),
    ("audit.field.refused", "整批拒绝", "refused"),
    ("audit.target.api_key", "API 密钥", "API key"),
    ("audit.target.user", "账号", "account"),
    ("audit.field.points", "积分", "points"),
    ("audit.field.reason", "原因", "reason"),
    ("audit.field.transaction_id", "交易编号", "transaction"),
    ("audit.field.old_level_id", "原等级", "from level"),
    ("audit.field.new_level_id", "新等级", "to level"),
    ("audit.field.note", "备注", "note"),
    ("audit.field.filter", "筛选条件", "filter"),
    ("audit.field.until", "保留至", "until"),
    ("audit.field.members", "调整人数", "members moved"),
    ("audit.field.email", "邮箱", "email"),
    ("audit.field.name", "名称", "name"),
    ("audit.field.level_name", "等级名称", "name"),
    ("audit.field.level_order", "等级顺序", "order"),
    ("audit.field.min_points", "消费门槛", "spend threshold"),
    ("audit.field.discount_rate", "折扣率", "discount rate"),
    (
        "audit.field.point_multiplier",
        "积分倍率",
        "points multiplier",
    ),
    ("audit.field.is_active", "启用", "active"),
    ("common.yes", "是", "yes"),
    ("common.no", "否", "no"),
    ("audit.system", "系统", "system"),
    ("common.actions", "操作", "Actions"),
    (
        "login.disabled",
        "此账号已停用，请联系管理员。",
        "This account has been disabled. Ask an administrator.",
    ),
    ("admin.staff", "员工账号", "Staff"),
    ("staff.title", "员工账号", "Staff accounts"),
    ("staff.email", "邮箱", "Email"),
    ("staff.name", "姓名", "Name"),
    ("staff.created", "创建时间", "Created"),
    ("staff.status", "状态", "Status"),
    ("staff.active", "正常", "Active"),
    ("staff.disabled", "已停用", "Disabled"),
    ("staff.disable", "停用", "Disable"),
    ("staff.enable", "启用", "Enable"),
    ("staff.you", "（你）", "(you)"),
    (
        "staff.help",
        "停用的账号无法登录，已登录的会话在下一次请求时失效。角色：管理员可做一切；运营可管理会员、积分、兑换与活动，不能改等级、员工账号与 API 密钥；只读只能查看。新员工账号用命令行创建：member-portal create-staff --role operator。",
        "A disabled account cannot log in, and its open sessions end at their next request. Roles: an admin can do everything; an operator manages members, points, rewards and campaigns but not levels, staff accounts or API keys; a viewer only reads. Create staff accounts with member-portal create-staff --role operator.",
    ),
    (
        "staff.done_disabled",
        "账号已停用，其会话已失效。",
        "The account is disabled and its sessions have ended.",
    ),
    (
        "staff.done_enabled",
        "账号已启用。",
        "The account is enabled again.",
    ),
    (
        "audit.action.staff.disable",
        "停用员工账号",
        "Staff account disabled",
    ),
    (
        "audit.action.staff.enable",
        "启用员工账号",
        "Staff account enabled",
    ),
    (
        "error.field.user_id",
        "不能停用自己的账号，请让其他员工操作。",
        "You cannot disable your own account; ask another staff member.",
    ),
    (
        "level.not_negative",
        "不能为负数，需为不小于 0 的整数。",
        "Must be 0 or more, not negative.",
    ),
    (
        "error.field.adjustment",
        "单次调整超过了上限（STAFF_ADJUSTMENT_MAX_POINTS），请分次调整或请管理员调高上限。",
        "This is more than one adjustment may move (STAFF_ADJUSTMENT_MAX_POINTS); split it or ask an administrator to raise the limit.",
    ),
    (
        "member.confirm_adjust",
        "确认调整",
        "Confirm the adjustment",
    ),
    (
        "member.confirm_adjust_text",
        "你将为该会员调整以下积分，数额较大，请确认：",
        "This is a large adjustment. Please confirm:",
    ),
    ("member.confirm_yes", "确认调整", "Yes, adjust"),
    ("common.cancel", "取消", "Cancel"),
    ("member.done_adjusted", "积分已调整。", "Points adjusted."),
    ("member.done_level", "会员等级已设置。", "Level set."),
    (
        "keys.done_revoked",
        "API 密钥已吊销。",
        "The API key is revoked.",
    ),
    (
        "keys.confirm_revoke",
        "吊销后，使用该密钥的系统将立即无法调用接口。确定吊销？",
        "Systems using this key will be refused at once. Revoke it?",
    ),
    ("keys.confirm_yes", "确认吊销", "Yes, revoke"),
    (
        "staff.confirm_disable",
        "停用后，该员工将立即退出并无法登录。确定停用？",
        "The person is logged out at once and cannot log in. Disable the account?",
    ),
    ("staff.confirm_yes", "确认停用", "Yes, disable"),
    (
        "level.confirm_deactivate",
        "停用后，新会员不会再升到该等级。确定停用？",
        "Members will no longer move up to this level. Deactivate it?",
    ),
    ("level.confirm_yes", "确认停用", "Yes, deactivate"),
    ("level.done_saved", "等级已保存。", "Level saved."),
    (
        "level.done_active",
        "等级状态已更新。",
        "Level status updated.",
    ),
    ("confirm.title", "请确认", "Please confirm"),
    (
        "recalc.down",
        "也将消费未达当前等级门槛的会员调低",
        "Also move members down whose spend is below their level",
    ),
    (
        "recalc.manual",
        "也调整由员工手动设置等级的会员",
        "Also move members whose level staff set by hand",
    ),
    ("recalc.update", "更新预览", "Update preview"),
    ("recalc.direction", "方向", "Direction"),
    ("recalc.up", "升级", "Up"),
    ("recalc.down_word", "降级", "Down"),
    ("recalc.who", "将调整的会员", "Members who will move"),
    ("recalc.why", "原因", "Why"),
    (
        "recalc.reaches",
        "消费 ¥{spent} 达到 {level} 门槛 ¥{min}",
        "spend ¥{spent} reaches {level} (¥{min})",
    ),
    (
        "recalc.below",
        "消费 ¥{spent} 低于 {level} 门槛 ¥{min}",
        "spend ¥{spent} is below {level} (¥{min})",
    ),
    (
        "recalc.more",
        "仅列出前 50 位。",
        "Only the first 50 are listed.",
    ),
    (
        "recalc.kept_manual",
        "{n} 位会员的等级由员工手动设置，本次保持不变。",
        "{n} members whose level staff set by hand stay where they are.",
    ),
    (
        "recalc.kept_down",
        "{n} 位会员的消费低于当前等级门槛，本次不降级。",
        "{n} members whose spend is below their level are not moved down.",
    ),
    (
        "recalc.in_cooldown",
        "{n} 位会员最近刚变更过等级（冷却期内），本次不调整。",
        "{n} members changed level within the cooldown and are not moved now.",
    ),
    (
        "recalc.notified",
        "每位被调整的会员都会收到通知，变更记录注明原因。",
        "Every member moved is notified, and each change is recorded with its reason.",
    ),
    ("keys.name", "名称", "Name"),
    ("keys.prefix", "前缀", "Prefix"),
    ("keys.created", "创建时间", "Created"),
    ("keys.last_used", "最近使用", "Last used"),
    ("keys.never", "从未", "never"),
    ("keys.revoked", "已吊销", "revoked"),
    ("keys.revoke", "吊销", "Revoke"),
    ("keys.create", "创建密钥", "Create key"),
    (
        "keys.shown_once",
        "请立即复制此密钥，它只显示这一次：",
        "Copy this key now; it is shown only once:",
    ),
    ("keys.none", "还没有 API 密钥。", "No API keys yet."),
    (
        "error.field.level_name",
        "等级名称需为 1 到 50 个字符，且不能与已有等级重名。",
        "Level name must be 1 to 50 characters and not used by another level.",
    ),
    (
        "error.field.level_order",
        "等级顺序需为不小于 0 的整数，且不能与其他等级相同。",
        "Order must be a whole number from 0, not used by another level.",
    ),
    (
        "error.field.min_points",
        "消费门槛需随等级顺序递增，且只能有一个门槛为 0 的启用入门等级。",
        "Thresholds must rise with the order, with exactly one active entry level at 0.",
    ),
    (
        "error.field.discount_rate",
        "折扣率需大于 0 且不超过 1，最多 3 位小数（0.95 表示 9.5 折）。",
        "Discount rate must be above 0 and at most 1, with up to 3 decimals (0.95 = 5% off).",
    ),
    (
        "error.field.point_multiplier",
        "积分倍率需在 1.00 到 10.00 之间，最多 2 位小数。",
        "Multiplier must be from 1.00 to 10.00, with up to 2 decimals.",
    ),
    (
        "error.field.benefits",
        "最多 20 项权益，每行一项，每项不超过 100 个字符。",
        "At most 20 benefits, one per line, of up to 100 characters each.",
    ),
    (
        "error.field.points",
        "积分需为非零整数。",
        "Points must be a non-zero whole number.",
    ),
    (
        "error.field.base_points",
        "积分需为正整数。",
        "Points must be a positive whole number.",
    ),
    (
        "error.field.reason",
        "请填写原因（最多 500 个字符）。",
        "Give a reason (up to 500 characters).",
    ),
    (
        "error.field.note",
        "请填写备注（最多 500 个字符）。",
        "Add a note (up to 500 characters).",
    ),
    (
        "error.field.level_id",
        "请选择一个与当前不同的启用等级。",
        "Choose an active level other than the current one.",
    ),
    (
        "error.field.name",
        "名称需为 1 到 100 个字符，且只占一行。",
        "Name must be 1 to 100 characters on one line.",
    ),
    (
        "error.field.amount",
        "金额需大于 0，最多 2 位小数，且不超过订单剩余金额。",
        "Amount must be above 0 with up to 2 decimals, within what is left of the order.",
    ),
    (
        "error.field.refund_id",
        "部分退货需要提供退款单号。",
        "A partial return needs a refund id.",
    ),
    (
        "error.field.cursor",
        "分页参数无效。",
        "Invalid page cursor.",
    ),
    (
        "error.field.other",
        "输入有误，请检查后重试。",
        "Please check what you entered.",
    ),
    (
        "error.insufficient_points",
        "积分不足：需要 {required}，可用 {available}。",
        "Not enough points: {required} required, {available} available.",
    ),
    (
        "error.per_transaction",
        "单笔最多发放 {max} 积分，本次为 {actual}。",
        "At most {max} points per transaction; this one is {actual}.",
    ),
    (
        "error.daily_limit",
        "超出每日积分上限 {limit}（今日已获得 {earned}，本次 {requested}）。",
        "Daily limit of {limit} points reached ({earned} today, {requested} more asked).",
    ),
    (
        "error.idempotency",
        "该单号已用于内容不同的请求。",
        "This reference was already used with different details.",
    ),
    (
        "error.unavailable",
        "服务暂时不可用，请稍后重试。",
        "The service is temporarily unavailable; try again shortly.",
    ),
    (
        "error.concurrent",
        "该会员正在进行其他积分操作，请稍后重试。",
        "Another points operation for this member is in progress; try again shortly.",
    ),
    (
        "error.level_in_use",
        "该等级仍有 {members} 位会员，无法停用。",
        "{members} members are still on this level; it cannot be deactivated.",
    ),
    ("error.title", "出错了", "Something went wrong"),
    (
        "error.forbidden",
        "您没有权限访问此页面。",
        "You do not have access to this page.",
    ),
    (
        "error.not_found",
        "页面不存在。",
        "This page does not exist.",
    ),
    (
        "error.reason.level_name_taken",
        "已有同名的等级。",
        "A level with this name already exists.",
    ),
    (
        "error.reason.level_order_taken",
        "已有等级使用这个顺序号。",
        "Another level already has this order.",
    ),
    (
        "error.reason.external_id_taken",
        "已有会员使用这个外部编号。",
        "Another member already has this external_id.",
    ),
    (
        "error.reason.password_common",
        "这个密码太常见，容易被猜到，请换一个。",
        "This password is among the first that attackers try; choose another.",
    ),
    (
        "error.reason.password_is_email",
        "密码不能与邮箱相同。",
        "Password must not be your email address.",
    ),
    (
        "error.reason.password_too_short",
        "除空格外，密码至少需要 8 个字符。",
        "Password must have at least 8 characters besides spaces.",
    ),
    (
        "error.reason.password_length",
        "密码长度需为 8 到 128 个字符。",
        "Password must be 8 to 128 characters.",
    ),
    (
        "error.reason.end_before_start",
        "结束时间必须晚于开始时间。",
        "The end must be after the start.",
    ),
    (
        "error.reason.last_day_before_first",
        "最后一天不能早于第一天。",
        "The last day must not be before the first.",
    ),
    (
        "error.reason.own_account",
        "不能停用自己的账号，请让其他员工操作。",
        "You cannot disable your own account; ask another staff member.",
    ),
    (
        "error.reason.own_role",
        "不能修改自己的角色，请让其他管理员操作。",
        "You cannot change your own role; ask another admin.",
    ),
    (
        "error.reason.birthday_recorded",
        "生日已登记；如需更正，请联系客服。",
        "Your birthday is already recorded; customer service can correct it.",
    ),
    (
        "error.reason.link_expired",
        "链接已过期或已使用，请重新申请。",
        "This link has expired or was used already; ask for a new one.",
    ),
    (
        "error.reason.one_entry_level",
        "必须有且只有一个启用的等级门槛为 0（入门等级）。",
        "Exactly one active level must have threshold 0 (the entry level).",
    ),
    (
        "error.reason.already_reversed",
        "这笔积分已全部扣回。",
        "This earn has already been reversed in full.",
    ),
    (
        "error.reason.already_on_level",
        "会员已在这个等级。",
        "The member is already on this level.",
    ),
    (
        "error.reason.choose_active_level",
        "请选择一个启用的等级。",
        "Choose an active level.",
    ),
    (
        "error.reason.choose_listed_level",
        "请从列表中选择等级。",
        "Choose a level from the list.",
    ),
    (
        "error.reason.email_format",
        "请输入有效的邮箱地址，例如 name@example.com。",
        "Enter an email address such as name@example.com.",
    ),
    (
        "error.reward_not_found",
        "这个奖励已下架，或不存在。",
        "This reward is no longer offered, or does not exist.",
    ),
    (
        "error.coupon_not_found",
        "没有这张券。",
        "There is no such coupon.",
    ),
    (
        "error.csrf",
        "页面已过期，请返回刷新后重试。",
        "This form has expired. Go back, reload the page and try again.",
    ),
    (
        "error.bad_form",
        "表单内容不完整或无法识别，请返回刷新页面后重新填写。",
        "This form was incomplete or could not be read. Go back, reload the page and fill it in again.",
    ),
    (
        "error.bad_query",
        "网址中的参数无法识别，请返回后重试。",
        "This address has parameters that could not be read. Go back and try again.",
    ),
    (
        "error.internal",
        "服务器出错了，我们已记录此问题。",
        "Something went wrong on our side; it has been logged.",
    ),
    ("error.request_id", "请求编号", "Request id"),
    ("error.back", "返回首页", "Back to the start"),
    // rewards and coupons
    ("nav.rewards", "积分兑换", "Rewards"),
    ("nav.coupons", "我的券", "My coupons"),
    ("admin.rewards", "兑换礼品", "Rewards"),
    ("rewards.title", "积分兑换", "Ways to redeem"),
    ("rewards.balance", "可用积分", "Points to spend"),
    (
        "rewards.none",
        "暂时没有可兑换的礼品。",
        "There is nothing to redeem at the moment.",
    ),
    ("rewards.back", "返回积分兑换", "Back to rewards"),
    ("reward.cost", "所需积分", "Points"),
    ("reward.points", "积分", "points"),
    ("reward.stock", "剩余库存", "Stock left"),
    ("reward.min_level", "最低等级", "Lowest level"),
    ("reward.until", "兑换截止", "Redeem by"),
    ("reward.valid", "券有效期", "Coupon valid for"),
    ("reward.days", "天", "days"),
    ("reward.short_by", "还差积分", "Points still needed:"),
    ("reward.redeem", "兑换", "Redeem"),
    (
        "reward.refused.inactive",
        "该礼品暂不提供兑换。",
        "This reward is not offered at the moment.",
    ),
    (
        "reward.refused.not_started",
        "该礼品尚未开始兑换。",
        "This reward cannot be redeemed yet.",
    ),
    (
        "reward.refused.ended",
        "该礼品的兑换已结束。",
        "This reward can no longer be redeemed.",
    ),
    (
        "reward.refused.out_of_stock",
        "该礼品已兑完。",
        "This reward is out of stock.",
    ),
    (
        "reward.refused.limit",
        "每位会员限兑 {limit} 次，你已兑满。",
        "Each member may redeem this {limit} time(s); you have.",
    ),
    (
        "reward.refused.level",
        "你的会员等级暂不能兑换该礼品。",
        "This reward needs a higher membership level.",
    ),
    ("reward.kind", "类型", "Type"),
    ("reward.kind.amount", "满减券", "Amount off"),
    ("reward.kind.percent", "折扣券", "Percentage off"),
    ("reward.kind.item", "免费兑换", "Free item"),
    ("redeem.title", "确认兑换", "Confirm the redemption"),
    (
        "redeem.question",
        "确定用积分兑换",
        "Redeem your points for",
    ),
    (
        "redeem.balance_after",
        "兑换后剩余积分",
        "Points left after",
    ),
    ("redeem.yes", "确认兑换", "Redeem now"),
    ("coupons.title", "我的券", "My coupons"),
    (
        "member.no_coupons",
        "该会员还没有兑换过券。",
        "This member has no coupons.",
    ),
    (
        "coupons.none",
        "你还没有兑换过券。",
        "You have no coupons yet.",
    ),
    ("coupon.status", "状态", "Status"),
    ("coupon.status.issued", "可使用", "Ready to use"),
    ("coupon.status.consumed", "已使用", "Used"),
    ("coupon.status.cancelled", "已取消", "Cancelled"),
    ("coupon.status.expired", "已过期", "Expired"),
    ("coupon.valid_until", "有效期至", "Valid until"),
    ("coupon.expires", "到期时间", "Expiry"),
    ("coupon.cost", "兑换积分", "Points spent"),
    ("coupon.redeemed_at", "兑换时间", "Redeemed"),
    ("coupon.order", "使用订单", "Used on order"),
    ("coupon.used_at", "使用时间", "Used"),
    ("coupon.cancelled_at", "取消时间", "Cancelled"),
    (
        "coupon.show_at_checkout",
        "结账时出示二维码或券码即可使用。",
        "Show the QR code or the code at checkout.",
    ),
    (
        "coupon.cancel",
        "取消兑换并退回积分",
        "Cancel and get the points back",
    ),
    ("coupon.cancel_yes", "确认取消", "Cancel the redemption"),
    (
        "coupon.confirm_cancel",
        "取消后券码作废，积分退回原批次（原到期日不变）。",
        "The coupon stops working and its points go back to where they came from, with their original expiry dates.",
    ),
    (
        "coupon.confirm_cancel_staff",
        "取消该会员的兑换：券码作废，积分退回原批次，库存恢复。",
        "Cancel this member’s redemption: the coupon stops working, its points go back to their original batches and the stock is put back.",
    ),
    ("coupon.qr_label", "券码二维码", "QR code of coupon"),
    (
        "coupon.done_redeemed",
        "兑换成功，券已放入“我的券”。",
        "Redeemed. The coupon is in My coupons.",
    ),
    (
        "coupon.done_cancelled",
        "已取消兑换，积分已退回。",
        "Redemption cancelled; the points are back.",
    ),
    ("coupon.reward", "礼品", "Reward"),
    ("coupon.code", "券码", "Code"),
    ("coupon.points_back", "退回积分", "Points returned"),
    (
        "coupon.unusable.issued",
        "该券尚未在订单中使用。",
        "This coupon has not been used on an order.",
    ),
    (
        "coupon.unusable.consumed",
        "该券已在订单中使用，请先在该订单中释放。",
        "This coupon was used on an order; release it from that order first.",
    ),
    (
        "coupon.unusable.cancelled",
        "该券已取消，积分已退回。",
        "This coupon was cancelled and its points returned.",
    ),
    (
        "coupon.unusable.expired",
        "该券已过期。",
        "This coupon has expired.",
    ),
    ("coupon.find", "查找券码", "Find a coupon"),
    (
        "coupon.not_found",
        "没有这个券码。",
        "No coupon has this code.",
    ),
    ("coupon.owner", "会员", "Member"),
    (
        "coupon.cancel_help",
        "用于会员申请退券：积分退回原批次，库存恢复，操作会记入审计日志。",
        "For a member who asks to return a coupon: the points go back to their batches, the stock is put back, and the audit log records it.",
    ),
    ("reward.name", "名称", "Name"),
    ("reward.description", "说明", "Description"),
    ("reward.value", "面值", "Value"),
    (
        "reward.value_hint",
        "满减填元，折扣填减去的 %",
        "yuan, or % off",
    ),
    ("reward.always", "不限", "Always"),
    ("reward.empty_no_limit", "留空为不限", "empty: no limit"),
    ("reward.per_member_limit", "每人限兑", "Per member"),
    ("reward.every_level", "所有等级", "Every level"),
    ("reward.starts_on", "开始日期", "First day"),
    ("reward.ends_on", "结束日期（含）", "Last day (included)"),
    ("reward.valid_days", "券有效天数", "Coupon valid (days)"),
    ("reward.active", "上架", "Offered"),
    ("reward.create", "新建礼品", "New reward"),
    ("reward.save", "保存", "Save"),
    (
        "reward.none_yet",
        "还没有礼品，在下方新建一个。",
        "No rewards yet; create one below.",
    ),
    ("reward.gives", "优惠", "Gives"),
    ("reward.issued", "已兑换", "Redeemed"),
    ("reward.window", "兑换期", "Window"),
    ("reward.done_created", "礼品已创建。", "Reward created."),
    ("reward.done_saved", "礼品已保存。", "Reward saved."),
    (
        "reward.edit_keeps_coupons",
        "修改不影响已发出的券。",
        "Changes do not affect coupons already issued.",
    ),
    (
        "notify.coupon_issued",
        "你已兑换“{title}”，券码有效期至 {date}。",
        "You redeemed “{title}”; the coupon is valid until {date}.",
    ),
    (
        "notify.coupon_cancelled",
        "“{title}”的兑换已取消，积分已退回。",
        "Your redemption of “{title}” was cancelled and the points returned.",
    ),
    (
        "notify.coupon_consumed",
        "“{title}”已在订单 {order} 中使用。",
        "“{title}” was used on order {order}.",
    ),
    (
        "notify.coupon_released",
        "订单 {order} 已取消，“{title}”可再次使用。",
        "Order {order} was cancelled; “{title}” can be used again.",
    ),
    ("audit.action.reward.create", "新建礼品", "Reward created"),
    ("audit.action.reward.update", "修改礼品", "Reward changed"),
    (
        "audit.action.coupon.cancel",
        "取消兑换",
        "Redemption cancelled",
    ),
    ("audit.target.reward", "礼品", "reward"),
    ("audit.field.kind", "类型", "type"),
    ("audit.field.value", "面值", "value"),
    ("audit.field.points_cost", "所需积分", "points"),
    ("audit.field.stock", "库存", "stock"),
    ("audit.field.per_member_limit", "每人限兑", "per member"),
    ("audit.field.min_level_id", "最低等级", "lowest level"),
    ("audit.field.starts_at", "开始", "from"),
    ("audit.field.ends_at", "结束", "until"),
    ("audit.field.coupon_valid_days", "券有效天数", "coupon days"),
    ("audit.field.coupon_id", "券", "coupon"),
    ("audit.field.code", "券码", "code"),
    (
        "error.field.description",
        "说明最多 500 个字符。",
        "Description must be at most 500 characters.",
    ),
    ("error.field.kind", "请选择券的类型。", "Choose a type."),
    (
        "error.field.value",
        "满减券填减免金额（如 10 或 9.90），折扣券填大于 0 小于 100 的百分比（如 15）。",
        "An amount coupon needs the yuan it takes off (10 or 9.90); a percentage coupon a percent above 0 and below 100 (15).",
    ),
    (
        "error.field.points_cost",
        "所需积分需为 1 到 1000000000 的整数。",
        "Points must be a whole number from 1 to 1000000000.",
    ),
    (
        "error.field.stock",
        "库存留空为不限，或填 0 及以上的整数。",
        "Stock is empty (no limit) or a whole number of 0 or more.",
    ),
    (
        "error.field.per_member_limit",
        "每人限兑留空为不限，或填 1 及以上的整数。",
        "Per member is empty (no limit) or a whole number of 1 or more.",
    ),
    (
        "error.field.min_level_id",
        "请从列表中选择等级。",
        "Choose a level from the list.",
    ),
    (
        "error.field.starts_on",
        "请填写日期，如 2026-12-31。",
        "Enter a date such as 2026-12-31.",
    ),
    (
        "error.field.ends_on",
        "结束日期需为日期，且不早于开始日期。",
        "The last day must be a date, not before the first.",
    ),
    (
        "error.field.coupon_valid_days",
        "券有效天数需为 1 到 3650 的整数。",
        "Coupon days must be a whole number from 1 to 3650.",
    ),
    (
        "error.field.code",
        "券码为 16 位字母和数字，如 ABCD-EFGH-JKMN-PQRS。",
        "A coupon code is 16 letters and digits, such as ABCD-EFGH-JKMN-PQRS.",
    ),
    // campaigns and ways to earn
    ("nav.earn", "赚积分", "Ways to earn"),
    ("admin.campaigns", "积分活动", "Campaigns"),
    ("earn.title", "赚积分", "Ways to earn"),
    ("earn.rate_title", "消费得积分", "Points for what you spend"),
    (
        "earn.rate",
        "每消费 ¥1 得 {rate} 积分",
        "{rate} point(s) per ¥1",
    ),
    (
        "earn.rate_help",
        "按会员等级倍率计算，向下取整；活动期间另有奖励。",
        "Times your level’s multiplier, rounded down; campaigns add their bonus on top.",
    ),
    ("earn.birthday", "生日礼", "Birthday bonus"),
    ("earn.birthday_is", "你的生日：", "Your birthday:"),
    (
        "earn.birthday_fixed",
        "如需修改请联系客服。",
        "Ask customer service to correct it.",
    ),
    (
        "earn.birthday_bonus",
        "填写生日，生日当天可获得生日积分。",
        "Enter your birthday to get the birthday bonus on the day.",
    ),
    ("earn.birthday_label", "生日", "Birthday"),
    (
        "earn.birthday_once",
        "只能填写一次。",
        "You can enter it once.",
    ),
    ("earn.birthday_save", "保存生日", "Save my birthday"),
    ("earn.birthday_saved", "生日已保存。", "Birthday saved."),
    (
        "earn.campaigns",
        "进行中和即将开始的活动",
        "Campaigns now and coming",
    ),
    (
        "earn.no_campaigns",
        "暂时没有积分活动。",
        "No campaigns at the moment.",
    ),
    ("campaign.gives_multiplier", "积分 ×{m}", "×{m} points"),
    (
        "campaign.gives_bonus",
        "额外 +{n} 积分",
        "+{n} bonus points",
    ),
    ("campaign.kind", "类型", "Type"),
    ("campaign.kind.multiplier", "积分倍数", "Points multiplier"),
    ("campaign.kind.bonus", "订单奖励", "Order bonus"),
    ("campaign.kind.signup", "注册奖励", "Sign-up bonus"),
    ("campaign.kind.birthday", "生日奖励", "Birthday bonus"),
    ("campaign.on_source", "{source} 订单", "{source} earns"),
    ("campaign.on_every_order", "所有订单", "every order"),
    (
        "campaign.in_category",
        "品类 {category}",
        "category {category}",
    ),
    ("campaign.from_amount", "满 ¥{amount}", "from ¥{amount}"),
    ("campaign.joiner", "，", ", "),
    ("campaign.state", "状态", "Status"),
    ("campaign.state.live", "进行中", "Live"),
    ("campaign.state.scheduled", "即将开始", "Scheduled"),
    ("campaign.state.ended", "已结束", "Ended"),
    ("campaign.name", "名称", "Name"),
    ("campaign.gives", "奖励", "Gives"),
    ("campaign.applies", "适用", "Applies to"),
    ("campaign.window", "活动期", "Window"),
    ("campaign.end", "结束活动", "End the campaign"),
    (
        "campaign.confirm_end",
        "立即结束该活动？之后的订单不再获得它的奖励，已发放的奖励不变。",
        "End this campaign now? Orders from now on get none of its bonus; bonuses already paid stay.",
    ),
    (
        "campaign.none_yet",
        "还没有活动，在下方新建一个。",
        "No campaigns yet; create one below.",
    ),
    ("campaign.preview", "试算", "Preview"),
    ("campaign.order_amount", "订单金额", "Order amount"),
    ("campaign.source_type", "来源", "Source"),
    ("campaign.category", "品类", "Category"),
    ("campaign.preview_go", "试算", "Preview"),
    (
        "campaign.preview_order",
        "¥{amount} 的订单：",
        "An order of ¥{amount}:",
    ),
    (
        "campaign.preview_result",
        "{level} 得 {base} × 等级倍率 = {points} 积分，含活动共 {total} 积分",
        "a {level} member earns {base} × the level multiplier = {points} points, {total} with campaigns",
    ),
    ("campaign.create", "新建活动", "New campaign"),
    (
        "campaign.multiplier",
        "倍数（积分倍数活动）",
        "Multiplier (multiplier campaigns)",
    ),
    (
        "campaign.bonus_points",
        "奖励积分（其他活动）",
        "Bonus points (other campaigns)",
    ),
    (
        "campaign.min_amount",
        "最低订单金额（订单奖励）",
        "Least order amount (order bonus)",
    ),
    (
        "campaign.caps_help",
        "每条奖励单独记账，最多为单笔上限；与订单积分一起计入每日上限，超出部分不发放，订单积分本身不受影响。退货时按比例一并扣回。",
        "Each bonus is its own ledger line, at most the per-transaction cap; it counts towards the daily limit together with the order, and what would pass it is not paid (the order’s own points are never refused for it). A return takes back its share.",
    ),
    ("campaign.done_created", "活动已创建。", "Campaign created."),
    ("campaign.done_ended", "活动已结束。", "Campaign ended."),
    (
        "audit.action.campaign.create",
        "新建活动",
        "Campaign created",
    ),
    ("audit.action.campaign.end", "结束活动", "Campaign ended"),
    ("audit.target.campaign", "活动", "campaign"),
    ("audit.field.multiplier", "倍数", "multiplier"),
    ("audit.field.bonus_points", "奖励积分", "bonus"),
    ("audit.field.min_amount", "最低金额", "least amount"),
    ("audit.field.source_type", "来源", "source"),
    ("audit.field.category", "品类", "category"),
    (
        "error.field.multiplier",
        "倍数需大于 1 且不超过 10，如 2 即双倍积分。",
        "The multiplier is more than 1 and at most 10; 2 is double points.",
    ),
    (
        "error.field.bonus_points",
        "奖励积分需为 1 到 1000000 的整数。",
        "The bonus is a whole number of points from 1 to 1000000.",
    ),
    (
        "error.field.min_amount",
        "最低订单金额只用于订单奖励，如 100 或 99.90。",
        "A least order amount is for order bonuses only, such as 100 or 99.90.",
    ),
    (
        "error.field.source_type",
        "来源和品类只用于订单活动，最多 100 个字符。",
        "Source and category are for order campaigns only, at most 100 characters.",
    ),
    (
        "error.field.category",
        "来源和品类只用于订单活动，最多 100 个字符。",
        "Source and category are for order campaigns only, at most 100 characters.",
    ),
    (
        "error.field.birthday",
        "请填写过去的日期（如 1990-05-20）；生日只能填写一次。",
        "Enter a date in the past (such as 1990-05-20); a birthday can be entered once.",
    ),
    // password links and the member's account
    ("login.forgot", "忘记密码？", "Forgot your password?"),
    ("forgot.title", "找回密码", "Forgot your password"),
    (
        "forgot.help",
        "输入注册邮箱，我们会发送一个 30 分钟内有效的重设密码链接。",
        "Enter your email and we will send a link to set a new password; it works for 30 minutes.",
    ),
    ("forgot.send", "发送链接", "Send the link"),
    (
        "forgot.sent",
        "如果该邮箱已注册，重设密码的链接已发出，30 分钟内有效。",
        "If that email has an account, a link to set a new password is on its way; it works for 30 minutes.",
    ),
    ("reset.title", "设置新密码", "Set a new password"),
    ("reset.new_password", "新密码", "New password"),
    (
        "reset.rules",
        "至少 8 个字符，不要用常见密码或邮箱。",
        "At least 8 characters; not a common password or your email.",
    ),
    ("reset.save", "保存新密码", "Save the new password"),
    ("reset.new_link", "重新获取链接", "Get a new link"),
    (
        "reset.bad_link",
        "该链接已过期或已使用，请重新获取。",
        "This link has expired or was used already; ask for a new one.",
    ),
    (
        "reset.done",
        "新密码已保存，请登录。",
        "Your new password is saved; log in with it.",
    ),
    ("account.title", "我的账户", "My account"),
    (
        "members.search_hint",
        "会员编号、邮箱或姓名的一部分、外部编号、手机",
        "member code, part of an email or name, external id, phone",
    ),
    ("members.min_points", "积分下限", "Points from"),
    ("members.max_points", "积分上限", "Points up to"),
    ("members.joined", "注册日期", "Joined"),
    ("members.joined_to", "注册截止", "Joined until"),
    ("members.external_id", "外部编号", "External id"),
    ("members.export", "导出 CSV", "Export CSV"),
    (
        "error.field.min_points_filter",
        "积分需为 0 及以上的整数。",
        "Points are a whole number of 0 or more.",
    ),
    (
        "error.field.max_points",
        "积分需为 0 及以上的整数。",
        "Points are a whole number of 0 or more.",
    ),
    (
        "error.field.joined_from",
        "请填写日期，如 2026-12-31。",
        "Enter a date such as 2026-12-31.",
    ),
    (
        "error.field.joined_to",
        "请填写日期，如 2026-12-31。",
        "Enter a date such as 2026-12-31.",
    ),
    (
        "error.field.phone",
        "手机号为 4 到 32 位数字，可含空格、短横线和开头的 +。",
        "A phone number is 4 to 32 digits, spaces or dashes, with an optional leading +.",
    ),
    (
        "error.field.external_id",
        "外部编号为 1 到 100 个字符，且不能与其他会员重复。",
        "An external id is 1 to 100 characters and belongs to one member only.",
    ),
    ("type.release", "到账", "Released"),
    (
        "notify.points_released",
        "{points} 积分已到账，可以使用了。",
        "{points} points are released and ready to spend.",
    ),
    ("profile.pending", "待到账", "Pending"),
    ("profile.pending_from", "起可用", "spendable from"),
    ("points.pending_badge", "待到账", "pending"),
    ("account.export", "下载我的数据", "Download my data"),
    (
        "account.export_help",
        "资料、积分明细、积分批次、券和消息，一个 JSON 文件。",
        "Your profile, points history, batches, coupons and messages, as one JSON file.",
    ),
    ("account.export_go", "下载", "Download"),
    ("account.close", "注销账户", "Close my account"),
    (
        "account.close_help",
        "注销后无法登录，姓名、邮箱和生日被删除；积分记录以匿名方式保留，剩余积分作废。",
        "You can no longer log in, and your name, email and birthday are removed; the points ledger keeps its rows without them, and points left lapse.",
    ),
    (
        "account.close_password",
        "输入密码确认",
        "Your password, to confirm",
    ),
    ("account.close_go", "注销账户", "Close my account"),
    (
        "account.close_understood",
        "我知道注销后无法恢复，剩余积分作废",
        "I understand this cannot be undone and my points lapse",
    ),
    (
        "account.close_tick",
        "请先勾选确认。",
        "Tick the box to confirm first.",
    ),
    ("account.closed", "账户已注销。", "Your account is closed."),
    (
        "notify.member_password_reset",
        "已发送设置密码的链接。",
        "A link to set your password was sent.",
    ),
    (
        "audit.action.member.password_set",
        "设置密码",
        "Password set",
    ),
    ("audit.action.member.close", "注销账户", "Account closed"),
    ("audit.field.purpose", "用途", "purpose"),
    (
        "error.field.token",
        "该链接已过期或已使用，请重新获取。",
        "This link has expired or was used already; ask for a new one.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_zh_and_en() {
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh;q=0.8"),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(Lang::from_accept_language("fr-FR, en;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("de"), Lang::Zh);
        assert_eq!(Lang::from_accept_language(""), Lang::Zh);
    }

    /// Every `t("…")` in the templates and the web code names a key of the table.
    #[test]
    fn every_key_used_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("templates"), root.join("src/web")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        let mut used = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for piece in text.split("t(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                if key.contains('.') && !key.contains('{') && !key.contains(' ') {
                    used += 1;
                    assert!(
                        TEXT.contains_key(key),
                        "{}: unknown key {key}",
                        file.display()
                    );
                }
            }
        }
        assert!(used > 100, "found {used} uses");
    }

    /// Templates write texts unescaped ([`Text`] is `HtmlSafe`), which is right only while
    /// no text holds a character HTML escapes.
    #[test]
    fn every_named_validation_reason_reads_in_chinese() {
        use crate::error::{Error, Invalid};
        for r in Invalid::ALL {
            let key = format!("error.reason.{}", r.key());
            let zh = ENTRIES
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, zh, _)| *zh);
            let zh = zh.unwrap_or_else(|| panic!("{key} has no text"));
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{key}: {zh}"
            );
            let shown = crate::web::error::localized(&Error::invalid("field", *r), Lang::Zh);
            assert_eq!(shown, zh);
            let shown = crate::web::error::localized(&Error::invalid("field", *r), Lang::En);
            assert_eq!(
                shown,
                r.message(),
                "English readers get the service's own words"
            );
        }
    }

    #[test]
    fn no_text_needs_html_escaping() {
        for (k, zh, en) in ENTRIES {
            for text in [zh, en] {
                assert!(!text.contains(['<', '>', '&', '"', '\'']), "{k}: {text}");
            }
        }
    }

    #[test]
    fn every_key_is_unique_and_has_both_languages() {
        let mut seen = std::collections::HashSet::new();
        for (k, zh, en) in ENTRIES {
            assert!(seen.insert(k), "duplicate key {k}");
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
        }
        assert_eq!(Lang::En.t("nav.points"), "Points");
        assert_eq!(Lang::Zh.t("nav.points"), "积分明细");
    }
}
