// SVG pictures: a schedule (what the planner decided, step by step) and cost/memory curves.
// Pure functions returning the document text; the caller writes it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "membptt/schedule/op.hpp"

namespace membptt::cli {

// Time runs down, the sequence position across: forward runs are grey diagonals, backward steps
// red, stored hidden states blue dots with a bar for as long as they are held, stored internal
// states orange squares with their bar, restores dotted.
std::string schedule_svg(const std::vector<Op>& ops, std::int64_t length, const std::string& title);

struct Series {
  std::string name;
  std::vector<double> x, y;  // drawn as a line, or as a single marker when it has one point
};

// A chart with logarithmic x axis.
std::string curve_svg(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                      const std::string& y_label, double y_max);

}  // namespace membptt::cli
