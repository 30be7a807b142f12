terraform {
  # Nothing newer than Terraform 1.5, the last MPL release (and OpenTofu,
  # which forked from it): optional() object attributes, startswith and
  # strcontains, templatefile, yamlencode. The tests (tests/*.tftest.hcl)
  # need `tofu test` (OpenTofu >= 1.6); the module itself does not.
  #
  # No provider: the module only renders files from its variables.
  required_version = ">= 1.5.0"
}
