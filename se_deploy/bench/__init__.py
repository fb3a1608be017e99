"""se_deploy.bench"""
