import LoyaltyDomain

/// The points-health report as one self-contained HTML page: inline SVG charts with the
/// numbers in tables beside them, no scripts, nothing fetched from the network.
public enum ReportPage {
    /// The page for `health`, in `locale` (`en` or `zh-CN`).
    public static func render(_ health: PointsHealth, locale: String) -> String {
        let t = ReportText(locale: locale)
        var body = ""
        body += "<h1>\(t.title)</h1>\n<p class=\"asof\">\(t.asOf) <time id=\"as-of\">\(escape(health.asOf.rfc3339))</time></p>\n"

        body += section(id: "summary", title: t.summary, chart: "", table: table(
            [t.figure, t.points],
            [[t.issued, number(health.totalIssued, id: "total-issued")],
             [t.redeemed, number(health.totalRedeemed, id: "total-redeemed")],
             [t.expired, number(health.totalExpired, id: "total-expired")],
             [t.deducted, number(health.totalDeducted, id: "total-deducted")],
             [t.liability, number(health.liability, id: "liability")]]))

        let labels = health.months.map(\.label)
        body += section(
            id: "flows", title: t.flowsTitle,
            chart: barChart(id: "chart-flows", labels: labels, series: [
                (t.issued, "#2b7a78", health.months.map(\.issued)), (t.redeemed, "#3d5a80", health.months.map(\.redeemed)),
                (t.expired, "#e07a5f", health.months.map(\.expired)), (t.deducted, "#9c6644", health.months.map(\.deducted)),
            ]),
            table: table([t.month, t.issued, t.redeemed, t.expired, t.deducted, t.reversed, t.adjusted], health.months.map {
                [escape($0.label), number($0.issued), number($0.redeemed), number($0.expired), number($0.deducted), number($0.reversed), number($0.adjusted)]
            }))
        body += section(
            id: "liability-section", title: t.liabilityTitle,
            chart: lineChart(id: "chart-liability", labels: labels, values: health.months.map(\.liability)),
            table: table([t.month, t.liability], health.months.map { [escape($0.label), number($0.liability)] }))
        body += section(
            id: "expiry", title: t.expiryTitle,
            chart: barChart(id: "chart-expiry", labels: health.expiryForecast.map(\.month), series: [(t.expiring, "#e07a5f", health.expiryForecast.map(\.points))]),
            table: table([t.month, t.expiring], health.expiryForecast.map { [escape($0.month), number($0.points)] }
                + (health.unknownExpiryPoints > 0 ? [[t.expiryUnknown, number(health.unknownExpiryPoints, id: "expiry-unknown")]] : [])))
        body += section(
            id: "tiers", title: t.tiersTitle,
            chart: barChart(id: "chart-tiers", labels: health.tiers.map(\.name), series: [(t.members, "#2b7a78", health.tiers.map { Int64($0.members) })]),
            table: table([t.tier, t.members], health.tiers.map { [escape($0.name), number(Int64($0.members), id: "tier-\($0.tier)")] })
                + table([t.month, t.from, t.to, t.members], health.tierFlows.map { [escape($0.month), escape($0.from), escape($0.to), number(Int64($0.members))] }))
        body += section(
            id: "campaigns", title: t.campaignsTitle,
            chart: barChart(id: "chart-campaigns", labels: health.campaigns.map(\.name), series: [(t.cost, "#3d5a80", health.campaigns.map(\.pointsCost))]),
            table: table([t.campaign, t.reach, t.rewards, t.cost, t.coupons, t.treated, t.control, t.uplift], health.campaigns.map { campaign in
                let uplift = campaign.uplift.map { u in "\(decimal(u.estimate)) [\(decimal(u.low)), \(decimal(u.high))]" } ?? "–"
                return [escape(campaign.name), number(campaign.membersReached), number(campaign.rewards), number(campaign.pointsCost),
                        number(campaign.couponsIssued), "\(campaign.treated.triggers) / \(campaign.treated.orders)",
                        "\(campaign.control.triggers) / \(campaign.control.orders)", escape(uplift)]
            }) + "<p class=\"note\">\(t.upliftNote)</p>")
        body += section(
            id: "problems", title: t.problemsTitle,
            chart: barChart(id: "chart-dead-letters", labels: health.deadLetters.map(\.reason), series: [(t.deadLetters, "#e07a5f", health.deadLetters.map { Int64($0.count) })])
                + barChart(id: "chart-refusals", labels: health.refusals.map(\.reason), series: [(t.refusals, "#9c6644", health.refusals.map { Int64($0.count) })]),
            table: table([t.deadLetters, t.count], health.deadLetters.map { [escape($0.reason), number(Int64($0.count))] })
                + table([t.refusals, t.count], health.refusals.map { [escape($0.reason), number(Int64($0.count))] }))
        return """
            <!DOCTYPE html>
            <html lang="\(t.language)">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(t.title)</title>
            <style>
            body { font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
            section { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; border-top: 1px solid #ddd; padding-top: 1em; }
            section h2 { flex-basis: 100%; margin: 0; font-size: 1.2em; }
            table { border-collapse: collapse; font-size: 0.85em; }
            th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            svg text { font-size: 10px; fill: #444; }
            .note, .asof { color: #666; font-size: 0.85em; }
            </style>
            </head>
            <body>
            \(body)</body>
            </html>

            """
    }

    // MARK: Pieces

    static func section(id: String, title: String, chart: String, table: String) -> String {
        "<section id=\"\(id)\">\n<h2>\(title)</h2>\n<div class=\"chart\">\(chart)</div>\n<div class=\"numbers\">\(table)</div>\n</section>\n"
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var html = "<table><thead><tr>" + header.map { "<th>\($0)</th>" }.joined() + "</tr></thead><tbody>"
        for row in rows { html += "<tr>" + row.map { "<td>\($0)</td>" }.joined() + "</tr>" }
        return html + "</tbody></table>\n"
    }

    static func number(_ value: Int64, id: String? = nil) -> String {
        let text = grouped(value)
        guard let id else { return text }
        return "<span id=\"\(escape(id))\" data-value=\"\(value)\">\(text)</span>"
    }

    /// Thousands separated by commas.
    public static func grouped(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return (value < 0 ? "-" : "") + out
    }

    static func decimal(_ value: Double) -> String {
        let scaled = (value * 1000).rounded() / 1000
        return String(scaled)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Vertical bars, one group per label and one bar per series, with a legend.
    static func barChart(id: String, labels: [String], series: [(name: String, color: String, values: [Int64])]) -> String {
        let width = 720.0, height = 240.0, left = 64.0, bottom = 40.0, top = 24.0
        let top_ = series.flatMap(\.values).max() ?? 0
        let bottom_ = min(0, series.flatMap(\.values).min() ?? 0)
        let span = Double(max(top_ - bottom_, 1))
        func y(_ value: Int64) -> Double { top + (height - top - bottom) * (1 - Double(value - bottom_) / span) }
        var svg = "<svg id=\"\(id)\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">"
        svg += axis(left: left, width: width, y: y, top: top_, bottom: bottom_)
        let groupWidth = labels.isEmpty ? 0 : (width - left - 8) / Double(labels.count)
        let barWidth = series.isEmpty ? 0 : max(1, groupWidth * 0.8 / Double(series.count))
        for (group, label) in labels.enumerated() {
            let x0 = left + Double(group) * groupWidth + groupWidth * 0.1
            for (index, line) in series.enumerated() where group < line.values.count {
                let value = line.values[group]
                let (a, b) = (y(max(value, 0)), y(min(value, 0)))
                svg += "<rect x=\"\(fixed(x0 + Double(index) * barWidth))\" y=\"\(fixed(a))\" width=\"\(fixed(barWidth))\" height=\"\(fixed(max(b - a, 0)))\" fill=\"\(line.color)\"><title>\(escape(label)) \(escape(line.name)): \(grouped(value))</title></rect>"
            }
            if labels.count <= 24 || group % 2 == 0 {
                svg += "<text x=\"\(fixed(x0 + groupWidth * 0.4))\" y=\"\(fixed(height - bottom + 14))\" text-anchor=\"middle\">\(escape(String(label.prefix(14))))</text>"
            }
        }
        for (index, line) in series.enumerated() {
            let x = left + Double(index) * 130
            svg += "<rect x=\"\(fixed(x))\" y=\"4\" width=\"10\" height=\"10\" fill=\"\(line.color)\"/><text x=\"\(fixed(x + 14))\" y=\"13\">\(escape(line.name))</text>"
        }
        return svg + "</svg>"
    }

    /// A line through one value per label.
    static func lineChart(id: String, labels: [String], values: [Int64]) -> String {
        let width = 720.0, height = 240.0, left = 64.0, bottom = 40.0, top = 24.0
        let top_ = values.max() ?? 0, bottom_ = min(0, values.min() ?? 0)
        let span = Double(max(top_ - bottom_, 1))
        func y(_ value: Int64) -> Double { top + (height - top - bottom) * (1 - Double(value - bottom_) / span) }
        let step = values.count > 1 ? (width - left - 16) / Double(values.count - 1) : 0
        var svg = "<svg id=\"\(id)\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">"
        svg += axis(left: left, width: width, y: y, top: top_, bottom: bottom_)
        let points = values.enumerated().map { "\(fixed(left + 8 + Double($0.offset) * step)),\(fixed(y($0.element)))" }.joined(separator: " ")
        svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"#3d5a80\" stroke-width=\"2\"/>"
        for (index, label) in labels.enumerated() where labels.count <= 24 || index % 2 == 0 {
            svg += "<text x=\"\(fixed(left + 8 + Double(index) * step))\" y=\"\(fixed(height - bottom + 14))\" text-anchor=\"middle\">\(escape(label))</text>"
        }
        return svg + "</svg>"
    }

    /// The value axis: four gridlines with their values.
    static func axis(left: Double, width: Double, y: (Int64) -> Double, top: Int64, bottom: Int64) -> String {
        var svg = ""
        for tick in 0...4 {
            let value = bottom + (top - bottom) * Int64(tick) / 4
            let at = y(value)
            svg += "<line x1=\"\(fixed(left))\" y1=\"\(fixed(at))\" x2=\"\(fixed(width - 4))\" y2=\"\(fixed(at))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(fixed(left - 4))\" y=\"\(fixed(at + 3))\" text-anchor=\"end\">\(grouped(value))</text>"
        }
        return svg
    }

    static func fixed(_ value: Double) -> String {
        String((value * 10).rounded() / 10)
    }
}

/// The report's words in English and Simplified Chinese.
struct ReportText {
    let language: String
    let title, asOf, summary, figure, points, issued, redeemed, expired, deducted, reversed, adjusted, liability: String
    let flowsTitle, liabilityTitle, expiryTitle, expiring, expiryUnknown, month, tiersTitle, tier, members, from, to: String
    let campaignsTitle, campaign, reach, rewards, cost, coupons, treated, control, uplift, upliftNote: String
    let problemsTitle, deadLetters, refusals, count: String

    init(locale: String) {
        if locale == "zh-CN" {
            language = "zh-CN"
            title = "积分健康报告"; asOf = "截至"; summary = "总览"; figure = "项目"; points = "积分"
            issued = "发放"; redeemed = "兑换"; expired = "过期"; deducted = "扣减"; reversed = "退款冲回"; adjusted = "人工调整"
            liability = "未兑付积分"; flowsTitle = "每月积分发放、兑换、过期与扣减"; liabilityTitle = "每月末未兑付积分"
            expiryTitle = "未来 12 个月将过期的积分"; expiring = "将过期"; expiryUnknown = "过期时间未知（早期版本的账目）"; month = "月份"; tiersTitle = "各等级会员数与等级流转"
            tier = "等级"; members = "会员数"; from = "原等级"; to = "新等级"; campaignsTitle = "营销活动：覆盖、成本与增量"
            campaign = "活动"; reach = "覆盖会员"; rewards = "奖励次数"; cost = "积分成本"; coupons = "发券数"
            treated = "实验组 触发/订单"; control = "对照组 触发/订单"; uplift = "每次触发增量订单 [95% 区间]"
            upliftNote = "增量 = 实验组每次触发后 14 天内订单数 − 对照组的同一比例；区间按订单数服从泊松分布计算。"
            problemsTitle = "死信与拒绝原因"; deadLetters = "死信"; refusals = "拒绝"; count = "数量"
        } else {
            language = "en"
            title = "Points health"; asOf = "As of"; summary = "Summary"; figure = "Figure"; points = "Points"
            issued = "Issued"; redeemed = "Redeemed"; expired = "Expired"; deducted = "Deducted"; reversed = "Reversed by refunds"
            adjusted = "Adjusted"; liability = "Outstanding liability"; flowsTitle = "Points issued, redeemed, expired and deducted per month"
            liabilityTitle = "Outstanding liability at each month's end"; expiryTitle = "Points expiring in the next 12 months"
            expiring = "Expiring"; expiryUnknown = "Expiry unknown (entries of an earlier version)"; month = "Month"; tiersTitle = "Members per tier, and moves between tiers"; tier = "Tier"
            members = "Members"; from = "From"; to = "To"; campaignsTitle = "Campaigns: reach, cost and uplift"; campaign = "Campaign"
            reach = "Members reached"; rewards = "Rewards"; cost = "Points cost"; coupons = "Coupons"
            treated = "Treated triggers / orders"; control = "Control triggers / orders"; uplift = "Uplift in orders per trigger [95 % interval]"
            upliftNote = "Uplift = orders in the 14 days after a trigger per trigger, treated minus control; the interval treats each group's order count as Poisson."
            problemsTitle = "Dead letters and refusals by reason"; deadLetters = "Dead letters"; refusals = "Refusals"; count = "Count"
        }
    }
}
