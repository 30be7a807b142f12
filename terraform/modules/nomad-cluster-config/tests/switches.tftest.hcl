# TLS, ACL and the registry's TLS switched on (render.tftest.hcl checks
# them off).

variables {
  retry_join       = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
  registry_address = "registry.qufop.internal:5000"
}

run "tls_on" {
  command = plan

  variables {
    tls = {
      enabled   = true
      ca_file   = "/etc/qufop/tls/ca.pem"
      cert_file = "/etc/qufop/tls/agent.pem"
      key_file  = "/etc/qufop/tls/agent-key.pem"
    }
  }

  assert {
    condition = alltrue([for h in [output.server.nomad_hcl, output.clients.qufop.nomad_hcl] :
      can(regex("tls \\{\\s*http\\s*=\\s*true\\s*rpc\\s*=\\s*true\\s*ca_file\\s*=\\s*\"/etc/qufop/tls/ca.pem\"\\s*cert_file\\s*=\\s*\"/etc/qufop/tls/agent.pem\"\\s*key_file\\s*=\\s*\"/etc/qufop/tls/agent-key.pem\"\\s*verify_server_hostname\\s*=\\s*true", h))
    ])
    error_message = "With TLS, Nomad's HTTP and RPC use the files at the paths given and verify server host names."
  }
  assert {
    condition = alltrue([for h in [output.server.consul_hcl, output.clients.qufop.consul_hcl] :
      can(regex("tls \\{\\s*defaults \\{\\s*ca_file\\s*=\\s*\"/etc/qufop/tls/ca.pem\"\\s*cert_file\\s*=\\s*\"/etc/qufop/tls/agent.pem\"\\s*key_file\\s*=\\s*\"/etc/qufop/tls/agent-key.pem\"\\s*verify_incoming\\s*=\\s*true\\s*verify_outgoing\\s*=\\s*true", h))
      && can(regex("internal_rpc \\{\\s*verify_server_hostname\\s*=\\s*true", h))
      && strcontains(h, "https    = 8501") && strcontains(h, "grpc_tls = 8503")
    ])
    error_message = "With TLS, Consul verifies RPC both ways with the files at the paths given and serves HTTPS on 8501 and gRPC with TLS on 8503 (Consul refuses TLS on the plain gRPC port)."
  }
  assert {
    condition     = can(regex("consul \\{\\s*address\\s*=\\s*\"127.0.0.1:8501\"\\s*ssl\\s*=\\s*true\\s*ca_file\\s*=\\s*\"/etc/qufop/tls/ca.pem\"", output.clients.qufop.nomad_hcl))
    error_message = "With TLS, Nomad talks to Consul over HTTPS on 8501."
  }
  assert {
    condition     = !strcontains(output.server.nomad_hcl, "BEGIN") && !strcontains(output.server_cloud_init, "BEGIN CERTIFICATE")
    error_message = "Certificates are referred to by path, never copied into the rendered files."
  }
}

run "tls_off" {
  command = plan

  assert {
    condition     = !strcontains(output.server.nomad_hcl, "tls {") && !strcontains(output.clients.qufop.consul_hcl, "tls {") && strcontains(output.clients.qufop.consul_hcl, "https    = -1") && !strcontains(output.clients.qufop.consul_hcl, "grpc_tls") && !strcontains(output.clients.qufop.nomad_hcl, "ssl")
    error_message = "Without TLS: no tls blocks, Consul's HTTPS off, Nomad reaches Consul without ssl."
  }
}

run "acl_on" {
  command = plan

  variables {
    acl_enabled = true
  }

  assert {
    condition     = alltrue([for h in [output.server.nomad_hcl, output.clients.qufop.nomad_hcl] : can(regex("acl \\{\\s*enabled\\s*=\\s*true\\s*\\}", h))])
    error_message = "ACLs on in every Nomad agent."
  }
  assert {
    condition     = alltrue([for h in [output.server.consul_hcl, output.clients.qufop.consul_hcl] : can(regex("acl \\{\\s*enabled\\s*=\\s*true\\s*default_policy\\s*=\\s*\"deny\"", h))])
    error_message = "ACLs on in every Consul agent, denying by default."
  }
}

run "acl_off" {
  command = plan

  variables {
    acl_enabled = false
  }

  assert {
    condition     = alltrue([for h in [output.server.nomad_hcl, output.clients.qufop.nomad_hcl] : can(regex("acl \\{\\s*enabled\\s*=\\s*false\\s*\\}", h))]) && can(regex("acl \\{\\s*enabled\\s*=\\s*false\\s*default_policy\\s*=\\s*\"allow\"", output.server.consul_hcl))
    error_message = "ACLs off in every agent."
  }
}

run "registry_tls" {
  command = plan

  variables {
    registry_tls     = true
    registry_ca_file = "/etc/qufop/tls/registry-ca.pem"
  }

  assert {
    condition     = jsondecode(output.clients.qufop.docker_daemon_json)["insecure-registries"] == []
    error_message = "A TLS registry is not an insecure registry."
  }
  assert {
    condition     = contains(yamldecode(output.client_cloud_init.qufop).runcmd, "install -D -m 0644 /etc/qufop/tls/registry-ca.pem /etc/docker/certs.d/registry.qufop.internal:5000/ca.crt")
    error_message = "Docker trusts the registry's CA through /etc/docker/certs.d/<registry>/ca.crt."
  }
}

run "registry_plain" {
  command = plan

  assert {
    condition     = jsondecode(output.clients.qufop.docker_daemon_json)["insecure-registries"] == ["registry.qufop.internal:5000"]
    error_message = "A plain-HTTP registry is Docker's insecure registry."
  }
  assert {
    condition     = !anytrue([for c in yamldecode(output.client_cloud_init.qufop).runcmd : strcontains(c, "certs.d")])
    error_message = "No CA is installed for a plain-HTTP registry."
  }
}

run "no_registry" {
  command = plan

  variables {
    registry_address = null
  }

  assert {
    condition     = jsondecode(output.clients.qufop.docker_daemon_json)["insecure-registries"] == []
    error_message = "Without registry_address Docker lists no insecure registry (127.0.0.1:5000 needs none)."
  }
}
