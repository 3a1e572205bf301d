// The execution policies the planner knows.
#pragma once
#include <array>
#include <optional>
#include <string_view>

namespace membptt {

enum class Policy {
  Full,           // plain BPTT: every internal state kept
  Hsm,            // dynamic program over hidden-state checkpoints (Gruslys et al. BPTT-HSM)
  Ism,            // dynamic program over internal-state checkpoints (BPTT-ISM)
  Msm,            // dynamic program choosing hidden or internal per split (BPTT-MSM)
  Revolve,        // BPTT-HSM by Griewank's binomial closed form: no table, any length
  ChenSqrt,       // Chen et al. 2016: hidden checkpoints every ceil(sqrt T) steps, segments kept whole
  ChenRecursive,  // Chen et al. 2016, recursive: bisect with hidden checkpoints down to single steps
  Quadratic,      // only h_0 kept: every step recomputed from the start
};

inline constexpr std::array<Policy, 8> kAllPolicies = {Policy::Full,    Policy::Hsm,      Policy::Ism,
                                                       Policy::Msm,     Policy::Revolve,  Policy::ChenSqrt,
                                                       Policy::ChenRecursive, Policy::Quadratic};

constexpr std::string_view policy_name(Policy p) {
  switch (p) {
    case Policy::Full: return "full";
    case Policy::Hsm: return "hsm";
    case Policy::Ism: return "ism";
    case Policy::Msm: return "msm";
    case Policy::Revolve: return "revolve";
    case Policy::ChenSqrt: return "chen-sqrt";
    case Policy::ChenRecursive: return "chen-recursive";
    case Policy::Quadratic: return "quadratic";
  }
  return "?";
}

inline std::optional<Policy> parse_policy(std::string_view s) {
  for (Policy p : kAllPolicies)
    if (policy_name(p) == s) return p;
  return std::nullopt;
}

}  // namespace membptt
