# node-gyp build of the native addons, run by `npm ci` through the package's install script:
# - original_dst (native/original_dst.c): SO_ORIGINAL_DST for transparent capture; Linux only (netfilter).
# - memory_trim (native/memory_trim.c): glibc malloc_trim for the sidecar's periodic memory return.
{
  "targets": [
    {
      "target_name": "original_dst",
      "sources": ["native/original_dst.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-O2"],
      "defines": ["NAPI_VERSION=1"]
    },
    {
      "target_name": "memory_trim",
      "sources": ["native/memory_trim.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-O2"],
      "defines": ["NAPI_VERSION=1"]
    }
  ]
}
