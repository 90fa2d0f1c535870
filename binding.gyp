{
  "targets": [
    {
      "target_name": "minivpn",
      "sources": ["native/addon.cc", "native/tun.cc", "native/udp.cc", "native/dtls.cc", "native/handle.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", { "sources!": ["native/tun.cc", "native/udp.cc"] }]]
    }
  ]
}
