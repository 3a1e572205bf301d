#include "svg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace membptt::cli {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"};

}  // namespace

std::string schedule_svg(const std::vector<Op>& ops, std::int64_t length, const std::string& title) {
  // Rows of time: one per forward or backward step.
  std::int64_t rows = 0;
  for (const Op& op : ops) rows += forward_steps(op) + (op.kind == OpKind::Backward ? 1 : 0);
  const double W = 900, H = 620, left = 60, top = 50, right = 20, bottom = 40;
  const double sx = (W - left - right) / static_cast<double>(std::max<std::int64_t>(length, 1));
  const double sy = (H - top - bottom) / static_cast<double>(std::max<std::int64_t>(rows, 1));
  auto X = [&](double pos) { return left + pos * sx; };
  auto Y = [&](double row) { return top + row * sy; };

  std::string body;
  struct Held { bool internal; std::int64_t pos; double since; };
  std::vector<Held> held;
  std::int64_t row = 0, cursor = 0;
  auto bar = [&](const Held& h, double until) {
    body += fmt::format("<line x1='{:.2f}' y1='{:.2f}' x2='{:.2f}' y2='{:.2f}' stroke='{}' stroke-opacity='0.25' stroke-width='{:.2f}'/>\n",
                        X(static_cast<double>(h.pos)), Y(h.since), X(static_cast<double>(h.pos)), Y(until),
                        h.internal ? "#ff7f0e" : "#1f77b4", std::max(1.0, std::min(sx * 0.6, 4.0)));
  };
  for (const Op& op : ops) {
    switch (op.kind) {
      case OpKind::Advance:
      case OpKind::AdvanceHidden:
      case OpKind::AdvanceRecord: {
        const std::int64_t n = forward_steps(op);
        const char* color = op.kind == OpKind::AdvanceRecord ? "#ff7f0e" : "#888";
        body += fmt::format("<line x1='{:.2f}' y1='{:.2f}' x2='{:.2f}' y2='{:.2f}' stroke='{}' stroke-width='1'/>\n",
                            X(static_cast<double>(op.t - 1)), Y(static_cast<double>(row)),
                            X(static_cast<double>(op.t - 1 + n)), Y(static_cast<double>(row + n)), color);
        row += n;
        cursor = op.t - 1 + n;
        if (op.kind == OpKind::AdvanceHidden) {
          held.push_back({false, op.t, static_cast<double>(row)});
          body += fmt::format("<circle cx='{:.2f}' cy='{:.2f}' r='3' fill='#1f77b4'/>\n", X(static_cast<double>(op.t)), Y(static_cast<double>(row)));
        } else if (op.kind == OpKind::AdvanceRecord) {
          held.push_back({true, op.t, static_cast<double>(row)});
          body += fmt::format("<rect x='{:.2f}' y='{:.2f}' width='5' height='5' fill='#ff7f0e'/>\n", X(static_cast<double>(op.t)) - 2.5, Y(static_cast<double>(row)) - 2.5);
        }
        break;
      }
      case OpKind::Backward:
        if (!held.empty()) { bar(held.back(), static_cast<double>(row + 1)); held.pop_back(); }
        body += fmt::format("<line x1='{:.2f}' y1='{:.2f}' x2='{:.2f}' y2='{:.2f}' stroke='#d62728' stroke-width='2'/>\n",
                            X(static_cast<double>(op.t)), Y(static_cast<double>(row)), X(static_cast<double>(op.t - 1)), Y(static_cast<double>(row + 1)));
        row += 1;
        break;
      case OpKind::Pop:
        if (!held.empty()) { bar(held.back(), static_cast<double>(row)); held.pop_back(); }
        break;
      case OpKind::Keep:  // online schedules: the cursor's state kept, an earlier one given up
        held.push_back({false, op.t, static_cast<double>(row)});
        body += fmt::format("<circle cx='{:.2f}' cy='{:.2f}' r='3' fill='#1f77b4'/>\n", X(static_cast<double>(op.t)), Y(static_cast<double>(row)));
        break;
      case OpKind::Drop:
        if (op.slot >= 1 && static_cast<std::size_t>(op.slot) <= held.size()) {
          const auto it = held.begin() + (op.slot - 1);
          bar(*it, static_cast<double>(row));
          held.erase(it);
        }
        break;
      case OpKind::Restore:
        body += fmt::format("<line x1='{:.2f}' y1='{:.2f}' x2='{:.2f}' y2='{:.2f}' stroke='#1f77b4' stroke-dasharray='3,3' stroke-width='0.8'/>\n",
                            X(static_cast<double>(cursor)), Y(static_cast<double>(row)), X(static_cast<double>(op.t)), Y(static_cast<double>(row)));
        cursor = op.t;
        break;
    }
  }
  std::string svg = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' viewBox='0 0 {} {}' font-family='sans-serif' font-size='12'>\n"
      "<rect width='100%' height='100%' fill='white'/>\n"
      "<text x='{}' y='22' font-size='15'>{}</text>\n"
      "<text x='{}' y='{}'>sequence position 0..{} →</text>\n"
      "<text x='14' y='{}' transform='rotate(-90 14 {})'>time (forward + backward steps) →</text>\n"
      "<text x='{}' y='40' font-size='11'>grey/orange: forward (orange records), red: backward, blue dot: hidden state kept, orange square: internal state kept, bars: held</text>\n",
      W, H, W, H, left, escape(title), left, H - 12, length, H / 2, H / 2, left);
  svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#ccc'/>\n", left, top, W - left - right, H - top - bottom);
  svg += body;
  svg += "</svg>\n";
  return svg;
}

std::string curve_svg(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                      const std::string& y_label, double y_max) {
  const double W = 900, H = 560, left = 70, top = 50, right = 190, bottom = 60;
  double x_min = INFINITY, x_max = 0;
  for (const auto& s : series)
    for (double x : s.x)
      if (x > 0) x_min = std::min(x_min, x), x_max = std::max(x_max, x);
  if (!(x_min < x_max)) x_min = 1e-3, x_max = 1;
  const double lx0 = std::floor(std::log10(x_min)), lx1 = std::ceil(std::log10(x_max));
  auto X = [&](double x) { return left + (std::log10(x) - lx0) / (lx1 - lx0) * (W - left - right); };
  auto Y = [&](double y) { return top + (1.0 - std::min(y, y_max) / y_max) * (H - top - bottom); };

  std::string svg = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' viewBox='0 0 {} {}' font-family='sans-serif' font-size='12'>\n"
      "<rect width='100%' height='100%' fill='white'/>\n<text x='{}' y='24' font-size='15'>{}</text>\n",
      W, H, W, H, left, escape(title));
  // Axes and grid.
  for (double e = lx0; e <= lx1 + 1e-9; e += 1) {
    const double x = X(std::pow(10.0, e));
    svg += fmt::format("<line x1='{:.1f}' y1='{}' x2='{:.1f}' y2='{}' stroke='#eee'/><text x='{:.1f}' y='{}' text-anchor='middle'>{:g}</text>\n",
                       x, top, x, H - bottom, x, H - bottom + 16, std::pow(10.0, e));
  }
  const int y_ticks = 6;
  for (int i = 0; i <= y_ticks; ++i) {
    const double v = y_max * i / y_ticks;
    svg += fmt::format("<line x1='{}' y1='{:.1f}' x2='{}' y2='{:.1f}' stroke='#eee'/><text x='{}' y='{:.1f}' text-anchor='end'>{:.3g}</text>\n",
                       left, Y(v), W - right, Y(v), left - 6, Y(v) + 4, v);
  }
  svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#999'/>\n", left, top, W - left - right, H - top - bottom);
  svg += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{}</text>\n", left + (W - left - right) / 2, H - 18, escape(x_label));
  svg += fmt::format("<text x='16' y='{}' transform='rotate(-90 16 {})' text-anchor='middle'>{}</text>\n", top + (H - top - bottom) / 2,
                     top + (H - top - bottom) / 2, escape(y_label));
  int k = 0;
  for (const auto& s : series) {
    const char* color = kPalette[k % 10];
    if (s.x.size() == 1) {
      svg += fmt::format("<circle cx='{:.2f}' cy='{:.2f}' r='5' fill='{}'/>\n", X(s.x[0]), Y(s.y[0]), color);
    } else if (!s.x.empty()) {
      std::string pts;
      for (std::size_t i = 0; i < s.x.size(); ++i)
        if (s.x[i] > 0) pts += fmt::format("{:.2f},{:.2f} ", X(s.x[i]), Y(s.y[i]));
      svg += fmt::format("<polyline points='{}' fill='none' stroke='{}' stroke-width='2'/>\n", pts, color);
    }
    svg += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='{}' stroke-width='3'/><text x='{}' y='{}'>{}</text>\n", W - right + 12,
                       top + 10 + 18 * k, W - right + 32, top + 10 + 18 * k, color, W - right + 38, top + 14 + 18 * k, escape(s.name));
    ++k;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace membptt::cli
