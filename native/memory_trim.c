/*
 * trim(): glibc's malloc_trim(0), so the sidecar can hand memory the allocator keeps free back to the
 * kernel after a burst (proxy/core/memory-trim.ts says why and how often). With another C library there
 * is nothing to call: trim() returns undefined and the caller stops asking.
 */
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value Trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
#ifdef __GLIBC__
  napi_get_boolean(env, malloc_trim(0) != 0, &out);
#else
  napi_get_undefined(env, &out);
#endif
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, Trim, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
