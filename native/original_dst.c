/*
 * original_dst: the destination a connection had before iptables REDIRECT rewrote it.
 *
 * When the nat table redirects an app's connection to the sidecar (outbound port 15001, inbound 15006),
 * the accepted socket's local address is the sidecar's own; the address the app dialled survives only in
 * the kernel's connection-tracking entry. getsockopt(SO_ORIGINAL_DST) reads it for IPv4 and
 * getsockopt(IP6T_SO_ORIGINAL_DST) for IPv6. Node has no API for either, hence this addon.
 *
 * Exports getOriginalDst(fd) -> { address, port, family }. Errors are thrown as JS Errors carrying
 * `code` (the errno name, e.g. "ENOENT"), `errno` and `syscall`, with a message saying what it means here;
 * a connection that was not NATed at all (dialled the capture port directly) throws ERR_NOT_REDIRECTED.
 * Only node_api.h (N-API version 1 functions), so one binary works across Node versions.
 */
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netfilter_ipv4.h>

/* linux/netfilter_ipv6/ip6_tables.h defines it too, but that header clashes with netinet/in.h on some libcs. */
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef SOL_IPV6
#define SOL_IPV6 IPPROTO_IPV6
#endif

static const char *errno_name(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case ENOTCONN: return "ENOTCONN";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPERM: return "EPERM";
    case EFAULT: return "EFAULT";
    default: return "EUNKNOWN";
  }
}

/* What an operator should understand from each errno, in the context of a redirected connection. */
static const char *errno_meaning(int err) {
  switch (err) {
    case ENOENT:
      return "the connection has no NAT entry in connection tracking: it reached this socket directly, not through an iptables REDIRECT";
    case EBADF:
      return "the file descriptor is not open (was the socket already closed?)";
    case ENOTSOCK:
      return "the file descriptor is not a socket";
    case ENOPROTOOPT:
      return "the kernel cannot report original destinations for this socket (connection tracking for this address family is not loaded, or the socket is not TCP)";
    case EAFNOSUPPORT:
      return "the socket is neither IPv4 nor IPv6 (a Unix socket?)";
    case EINVAL:
      return "the socket is not a connected TCP socket of a supported family";
    default:
      return strerror(err);
  }
}

static void throw_errno(napi_env env, int err, const char *syscall_name, const char *call) {
  char message[512];
  snprintf(message, sizeof message, "%s failed: %s (%s)", call, errno_meaning(err), errno_name(err));
  napi_value code, msg, error, errno_value, syscall;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok) return;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return;
  if (napi_create_error(env, code, msg, &error) != napi_ok) return;
  if (napi_create_int32(env, err, &errno_value) == napi_ok) napi_set_named_property(env, error, "errno", errno_value);
  if (napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &syscall) == napi_ok) {
    napi_set_named_property(env, error, "syscall", syscall);
  }
  napi_throw(env, error);
}

/*
 * With connection tracking active but no NAT on this connection, the kernel answers with the address the
 * connection really has: someone dialled the capture port directly. To a proxy that would mean "connect
 * to yourself", so it is reported as an error, not as a destination.
 */
static void throw_not_redirected(napi_env env) {
  napi_value code, msg, error;
  if (napi_create_string_utf8(env, "ERR_NOT_REDIRECTED", NAPI_AUTO_LENGTH, &code) != napi_ok) return;
  if (napi_create_string_utf8(env,
                              "the connection was not redirected: its original destination is this socket's own address "
                              "(it dialled the capture port directly)",
                              NAPI_AUTO_LENGTH, &msg) != napi_ok) return;
  if (napi_create_error(env, code, msg, &error) != napi_ok) return;
  napi_throw(env, error);
}

static int same_v4(const struct sockaddr_storage *local, const struct sockaddr_in *dst) {
  if (local->ss_family == AF_INET) {
    const struct sockaddr_in *l = (const struct sockaddr_in *)local;
    return l->sin_port == dst->sin_port && l->sin_addr.s_addr == dst->sin_addr.s_addr;
  }
  if (local->ss_family == AF_INET6) {
    const struct sockaddr_in6 *l = (const struct sockaddr_in6 *)local;
    return l->sin6_port == dst->sin_port && IN6_IS_ADDR_V4MAPPED(&l->sin6_addr) &&
           memcmp(&l->sin6_addr.s6_addr[12], &dst->sin_addr.s_addr, 4) == 0;
  }
  return 0;
}

static int same_v6(const struct sockaddr_storage *local, const struct sockaddr_in6 *dst) {
  if (local->ss_family != AF_INET6) return 0;
  const struct sockaddr_in6 *l = (const struct sockaddr_in6 *)local;
  return l->sin6_port == dst->sin6_port && memcmp(&l->sin6_addr, &dst->sin6_addr, sizeof dst->sin6_addr) == 0;
}

static napi_value make_result(napi_env env, const char *address, int port, int family) {
  napi_value result, address_value, port_value, family_value;
  if (napi_create_object(env, &result) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &address_value) != napi_ok) return NULL;
  if (napi_create_int32(env, port, &port_value) != napi_ok) return NULL;
  if (napi_create_int32(env, family, &family_value) != napi_ok) return NULL;
  napi_set_named_property(env, result, "address", address_value);
  napi_set_named_property(env, result, "port", port_value);
  napi_set_named_property(env, result, "family", family_value);
  return result;
}

static napi_value original_dst_v4(napi_env env, int fd, const struct sockaddr_storage *local) {
  struct sockaddr_in dst;
  socklen_t len = sizeof dst;
  memset(&dst, 0, sizeof dst);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) {
    throw_errno(env, errno, "getsockopt", "getsockopt(SOL_IP, SO_ORIGINAL_DST)");
    return NULL;
  }
  if (same_v4(local, &dst)) {
    throw_not_redirected(env);
    return NULL;
  }
  char text[INET_ADDRSTRLEN];
  if (inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text) == NULL) {
    throw_errno(env, errno, "getsockopt", "getsockopt(SOL_IP, SO_ORIGINAL_DST)");
    return NULL;
  }
  return make_result(env, text, ntohs(dst.sin_port), 4);
}

static napi_value original_dst_v6(napi_env env, int fd, const struct sockaddr_storage *local) {
  struct sockaddr_in6 dst;
  socklen_t len = sizeof dst;
  memset(&dst, 0, sizeof dst);
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0) {
    int err = errno;
    /*
     * A dual-stack listener (Node's default for "::") accepts IPv4 clients as IPv4-mapped addresses on an
     * AF_INET6 socket; their conntrack entry is IPv4, so ask the IPv4 way before giving up.
     */
    if (err == ENOENT || err == ENOPROTOOPT) {
      struct sockaddr_in dst4;
      socklen_t len4 = sizeof dst4;
      memset(&dst4, 0, sizeof dst4);
      if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst4, &len4) == 0) {
        if (same_v4(local, &dst4)) {
          throw_not_redirected(env);
          return NULL;
        }
        char text4[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &dst4.sin_addr, text4, sizeof text4) != NULL) {
          return make_result(env, text4, ntohs(dst4.sin_port), 4);
        }
      }
    }
    throw_errno(env, err, "getsockopt", "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)");
    return NULL;
  }
  if (same_v6(local, &dst)) {
    throw_not_redirected(env);
    return NULL;
  }
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof text) == NULL) {
    throw_errno(env, errno, "getsockopt", "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)");
    return NULL;
  }
  return make_result(env, text, ntohs(dst.sin6_port), 6);
}

static napi_value get_original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  napi_valuetype type = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "getOriginalDst(fd): fd must be a number");
    return NULL;
  }
  double fd_number = 0;
  if (napi_get_value_double(env, argv[0], &fd_number) != napi_ok) return NULL;
  if (!(fd_number >= 0 && fd_number <= 2147483647.0) || fd_number != (double)(int)fd_number) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "getOriginalDst(fd): fd must be a non-negative integer");
    return NULL;
  }
  int fd = (int)fd_number;

  /* The socket's own family decides which conntrack table to ask. */
  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  memset(&local, 0, sizeof local);
  if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) {
    throw_errno(env, errno, "getsockname", "getsockname");
    return NULL;
  }
  if (local.ss_family == AF_INET) return original_dst_v4(env, fd, &local);
  if (local.ss_family == AF_INET6) return original_dst_v6(env, fd, &local);
  throw_errno(env, EAFNOSUPPORT, "getsockname", "original destination of a non-IP socket");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "getOriginalDst", NAPI_AUTO_LENGTH, get_original_dst, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getOriginalDst", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
