# node-gyp build of the original-destination addon (native/original_dst.c), run by `npm ci` through the
# package's install script. Linux only: SO_ORIGINAL_DST is a netfilter socket option.
{
  "targets": [
    {
      "target_name": "original_dst",
      "sources": ["native/original_dst.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-O2"],
      "defines": ["NAPI_VERSION=1"]
    }
  ]
}
