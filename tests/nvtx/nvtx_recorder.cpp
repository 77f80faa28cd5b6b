// An NVTX injection library for the tests: NVTX loads it from NVTX_INJECTION64_PATH at a
// process's first NVTX call, as Nsight Systems' own would be, and it records the domain
// ranges pushed and popped ("push bnorm/bnorm_forward_training", "pop bnorm") for the
// test to read through nvtx_recorder_take(). Only the calls NVTX3's C++ ranges make are
// taken over: domain creation, registered strings, push and pop.
#include <nvtx3/nvToolsExt.h>

#include <cstring>
#include <deque>
#include <mutex>
#include <string>

namespace {

std::mutex g_mu;
std::deque<std::string> g_names;  // domains and registered strings; their addresses are the handles
std::string g_log;

const char* handle_name(const void* h) { return h ? static_cast<const std::string*>(h)->c_str() : "(default)"; }

nvtxDomainHandle_t domain_create(const char* name) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_names.emplace_back(name ? name : "");
  return reinterpret_cast<nvtxDomainHandle_t>(&g_names.back());
}

nvtxStringHandle_t register_string(nvtxDomainHandle_t, const char* s) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_names.emplace_back(s ? s : "");
  return reinterpret_cast<nvtxStringHandle_t>(&g_names.back());
}

int range_push(nvtxDomainHandle_t d, const nvtxEventAttributes_t* a) {
  std::lock_guard<std::mutex> lk(g_mu);
  std::string msg = "?";
  if (a && a->messageType == NVTX_MESSAGE_TYPE_REGISTERED) msg = handle_name(a->message.registered);
  else if (a && a->messageType == NVTX_MESSAGE_TYPE_ASCII && a->message.ascii) msg = a->message.ascii;
  g_log += std::string("push ") + handle_name(d) + "/" + msg + "\n";
  return 0;
}

int range_pop(nvtxDomainHandle_t d) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_log += std::string("pop ") + handle_name(d) + "\n";
  return 0;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_table) {
  const auto* cb = static_cast<const NvtxExportTableCallbacks*>(get_table(NVTX_ETID_CALLBACKS));
  NvtxFunctionTable table = nullptr;
  unsigned int size = 0;
  if (!cb || !cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &table, &size) || !table ||
      size <= NVTX_CBID_CORE2_DomainCreateA)
    return 0;
  *table[NVTX_CBID_CORE2_DomainCreateA] = reinterpret_cast<NvtxFunctionPointer>(&domain_create);
  *table[NVTX_CBID_CORE2_DomainRegisterStringA] = reinterpret_cast<NvtxFunctionPointer>(&register_string);
  *table[NVTX_CBID_CORE2_DomainRangePushEx] = reinterpret_cast<NvtxFunctionPointer>(&range_push);
  *table[NVTX_CBID_CORE2_DomainRangePop] = reinterpret_cast<NvtxFunctionPointer>(&range_pop);
  return 1;
}

// The log since the last call, then cleared: a copy the caller frees with free().
__attribute__((visibility("default"))) char* nvtx_recorder_take(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  char* out = strdup(g_log.c_str());
  g_log.clear();
  return out;
}

}  // extern "C"
