"""The collection as a user installs it: ansible-galaxy, ansible-doc, module_defaults groups."""

import subprocess

from conftest import BIN, INSTALLED, ansible_env, lab_secrets, run_play, run_playbook


def run(*cmd):
    return subprocess.run([str(BIN / cmd[0])] + list(cmd[1:]), env=ansible_env(), capture_output=True, text=True,
                          timeout=120, check=False)


def test_installed_from_the_built_tarball():
    listed = run('ansible-galaxy', 'collection', 'list', 'pmx.multicluster')
    assert listed.returncode == 0, listed.stderr
    assert 'pmx.multicluster 0.1.0' in ' '.join(listed.stdout.split())
    # The tarball leaves the lab, CI plumbing and local files out.
    for absent in ('lab', '.ci', '.venv', '.lab', 'Makefile'):
        assert not (INSTALLED / absent).exists(), absent
    assert (INSTALLED / '.env.example.multi').is_file()


def test_ansible_doc_cluster_info():
    doc = run('ansible-doc', 'pmx.multicluster.pmx_cluster_info')  # ANSIBLE_NOCOLOR keeps it plain
    assert doc.returncode == 0, doc.stderr
    text = doc.stdout
    for expected in ('MODULE pmx.multicluster.pmx_cluster_info', 'fail_on_unreachable', 'route_lookup',
                     'env_file', 'token_secret', 'unreachable_clusters', 'EXAMPLES', 'RETURN VALUES'):
        assert expected in text, expected


def test_module_defaults_group(lab, tmp_path):
    """The pmx action group lets a play set env_file once for every module of the collection."""
    result = run_play(tmp_path, [{'pmx.multicluster.pmx_cluster_info': {'name': ['staging']}, 'register': 'info'}],
                      env={'PROXMOX_ENV_FILE': ''})
    assert result.rc != 0 and 'no Proxmox cluster is configured' in result['info']['msg']
    play = tmp_path / 'defaults.yml'
    play.write_text(
        '- hosts: localhost\n'
        '  gather_facts: false\n'
        '  vars: {ansible_python_interpreter: "{{ ansible_playbook_python }}"}\n'
        '  module_defaults:\n'
        '    group/pmx.multicluster.pmx:\n'
        '      env_file: %s\n'
        '  tasks:\n'
        '    - pmx.multicluster.pmx_cluster_info: {name: [staging]}\n'
        '      register: info\n'
        '    - ansible.builtin.assert:\n'
        '        that: info.clusters[0].name == "staging" and info.clusters[0].reachable\n' % lab.env_file)
    ok = run_playbook(play)
    assert ok.rc == 0, ok.output
    ok.assert_no_secret(lab_secrets(lab))


def test_ansible_doc_snapshot_disk_and_guest_modules():
    """Each new module documents its options, its examples and its return values, as ansible-doc renders them."""
    expected = {
        'pmx_snapshot': ('snapname', 'keep', 'prefix', 'pattern', 'force', 'vmstate', 'rollback', 'deleted', 'kept'),
        'pmx_snapshot_info': ('tree', 'current_parent', 'unreadable'),
        'pmx_guest_info': ('details', 'fail_on_unreachable', 'addresses', 'disks', 'why'),
        'pmx_vm': ('move_disks', 'delete_moved_source', 'detached'),
    }
    for module, words in expected.items():
        doc = run('ansible-doc', 'pmx.multicluster.%s' % module)
        assert doc.returncode == 0, doc.stderr
        text = doc.stdout
        for word in ('MODULE pmx.multicluster.%s' % module, 'EXAMPLES', 'RETURN VALUES', 'env_file') + words:
            assert word in text, (module, word)
        assert 'pmx.multicluster.%s:' % module in text  # an example task of the module itself
