// What the C API's sources share: the plan handle, and the guard that turns exceptions into a
// status and this thread's one-line message (membptt_last_error), never a crash across the C
// boundary.
#pragma once
#include <cstdint>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "membptt/backend/buffer.hpp"
#include "membptt/membptt.h"
#include "membptt/plan/planner.hpp"

struct membptt_plan {
  membptt::Plan plan;
};

namespace membptt::capi {

std::string& last_error();

// A caller's mistake that is not the planner's (a NULL pointer, a size out of range).
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Runs f, mapping exceptions to a status and the message.
template <class F>
membptt_status guarded(F&& f) noexcept {
  try {
    last_error().clear();
    f();
    return MEMBPTT_OK;
  } catch (const PlanError& e) {
    last_error() = e.what();
    return MEMBPTT_INVALID_ARGUMENT;
  } catch (const ArgumentError& e) {
    last_error() = e.what();
    return MEMBPTT_INVALID_ARGUMENT;
  } catch (const backend::AllocationError& e) {
    last_error() = e.what();
    return MEMBPTT_OUT_OF_MEMORY;
  } catch (const std::bad_alloc&) {
    last_error() = "out of memory";
    return MEMBPTT_OUT_OF_MEMORY;
  } catch (const std::length_error&) {
    last_error() = "out of memory (a size too large to allocate)";
    return MEMBPTT_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    last_error() = std::string("membptt internal error: ") + e.what();
    return MEMBPTT_INTERNAL_ERROR;
  } catch (...) {
    last_error() = "membptt internal error: an unknown exception";
    return MEMBPTT_INTERNAL_ERROR;
  }
}

inline void require(bool ok, const char* what) {
  if (!ok) throw ArgumentError(std::string(what) + " must not be NULL");
}

// A policy's name as callers pass it; nullopt for "auto" (or NULL). Throws PlanError naming the
// names allowed.
std::optional<Policy> policy_of(const char* name);

// Throws PlanError unless 1 <= length <= kMaxLength.
void check_length(std::int64_t length);

}  // namespace membptt::capi
